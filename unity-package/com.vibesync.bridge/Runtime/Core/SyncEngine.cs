// Editor-side sync logic shared by the Unity Editor glue and the headless host.
// Everything here runs on the host's main thread (Tick); the socket lives in BridgeClient.
//
//  * On welcome: register every tracked object (PROTOCOL §5), give collided ones a fresh uuid,
//    send `create` for objects the daemon did not know yet (parents before children). The
//    daemon itself sends a `resync` batch with what changed since hello.last_seq (§6.6).
//  * Fenced batches (§6.3) are collected and applied all at once through ISceneAdapter.ApplyBatch
//    (one undo step); then `applied` with the state hash (§6.5) of every uuid of the batch the
//    editor still has (§6.4). A batch that cannot be applied is answered with the hashes the
//    editor actually holds, so the daemon rolls it back at once instead of timing out.
//  * `batch_result` (§6.4) advances LastSeq and resolves the changes of the uuids it names (of a
//    batch this editor also received between fences: only the changes acknowledged before its
//    batch_begin, the ones it can carry; with `through`, a uuid's changes up to that request); a
//    `rolled_back` one is followed by a `resync` batch with the authoritative state, applied like
//    any batch (the change it corrects is resolved by then).
//  * A replay never undoes local work (§6.6): a `resync` batch skips every uuid with local changes
//    not yet resolved — dirty with a real difference, or sent with no `batch_result` (nor refusal)
//    yet, also across a reconnect, or marked not synced — and every uuid for which it is older than
//    the last committed batch_result, answers the hash this editor holds for it, and sends its full
//    state as `create` unless exactly that state is already queued at the daemon on this
//    connection (event `replay_kept_local`). A resync naming a uuid whose `change` still
//    awaits its ack waits for that ack (a STALE refusal comes after the resync it causes, and a
//    refused change is resolved: the resync is then applied). Forwarded fast/slow batches are
//    always applied.
//  * Local edits: the host marks uuids dirty; Tick diffs them against the last synced state with
//    epsilon 1e-5 and sends `change` ops, one change per uuid in flight (§6.6): a uuid whose
//    change has no batch_result (nor refusal) yet stays dirty and goes when it ends — except a
//    drag: while only fast-path changes of the uuid are in flight, an edit of fast-path parts
//    only (transform, name, visibility) goes at once, each frame; a deleted
//    object goes as a `tombstone` request (§5, §6.2). Echoes of our own applies are suppressed by state hash:
//    change events arrive a frame after the apply, so a "currently applying" flag cannot work.
//    `NOT_FOUND` (no synced state at the daemon) is answered with a `create`; `STALE` needs
//    nothing: the daemon sends the current state as a `resync` batch.
//  * Live previews (§6.3): another editor's transform / rename / visibility, applied at once through
//    ISceneAdapter.ApplyLive (no undo step), never answered, remembered as applied (no echo). Dropped
//    — the window's batch brings the state — while paused, while batches wait, for a uuid this
//    editor does not hold, and for a uuid with local work not yet resolved (the person's edit wins).
//  * Paused (Unity Play Mode): no local changes are captured or sent; incoming batches are
//    answered `applied {held: true}` at once (the daemon then does not wait for this editor) and
//    not applied; when the pause ends the editor asks for `resync {since_seq: LastSeq}`.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Threading;

namespace VibeSync.Bridge.Core
{
    /// <summary>What the engine needs from an editor (or the headless host's scene).</summary>
    public interface ISceneAdapter
    {
        /// <summary>States (canonical frame, meters) of every object that should be synced.</summary>
        IList<ObjectState> CaptureAll();
        /// <summary>The state of one object, or null when it no longer exists.</summary>
        ObjectState Capture(string uuid);
        /// <summary>Does the scene hold the object? (`Capture(uuid) != null` without reading its
        /// state: a scene save asks it of every object, `BaseSnapshot`.)</summary>
        bool Holds(string uuid);
        /// <summary>The editor's own handle for the object (Unity: hierarchy path).</summary>
        string EditorRef(string uuid);
        /// <summary>The VSM1 mesh buffer (§7) of the object, or null.</summary>
        byte[] MeshAttachment(string uuid);
        /// <summary>The daemon reported a collision: write a fresh uuid into the object and return it.</summary>
        string ReassignUuid(string uuid);
        /// <summary>Applies all changes as one undo step. Throwing marks the batch as failed.</summary>
        void ApplyBatch(IncomingBatch batch);
        /// <summary>
        /// Applies one live preview (PROTOCOL §6.3: `transform`, `rename` or `visibility` of an object
        /// the scene holds) at once, recording no undo step (the batch that follows is the undo step).
        /// </summary>
        void ApplyLive(RemoteChange change);
    }

    public sealed class SyncEngine
    {
        public const int MaxRegisterItems = 10000;
        public const int MaxOpsPerChange = 1000;
        /// <summary>At most this many uuids in one `editor_state.held` (PROTOCOL §6.7).</summary>
        public const int MaxHeld = 1000;
        public static readonly TimeSpan UserIdleAfter = TimeSpan.FromSeconds(2);
        /// <summary>
        /// How long a queued change counts as pending (for Idle) without a `batch_result` naming its
        /// uuid: the daemon drops no-op changes silently, so a result may never come. Verify
        /// timeout (5 s) + a window (≤ 0.5 s) + margin.
        /// </summary>
        public TimeSpan ResultWaitLimit = TimeSpan.FromSeconds(8);

        readonly BridgeClient client;
        readonly ISceneAdapter scene;
        readonly double unitScale;

        // Last state known to match the daemon, per uuid (canonical, meters).
        readonly Dictionary<string, ObjectState> synced = new Dictionary<string, ObjectState>();
        // Hash of the state we last applied from the daemon, per uuid (echo suppression).
        readonly Dictionary<string, string> appliedHash = new Dictionary<string, string>();
        /// <summary>uuid → the `mark` of the last `live` frame applied on this connection (PROTOCOL §6.1 `seen`).</summary>
        readonly Dictionary<string, long> liveSeen = new Dictionary<string, long>(StringComparer.Ordinal);
        readonly HashSet<string> dirty = new HashSet<string>();
        readonly HashSet<string> registering = new HashSet<string>(); // register sent, ack pending
        // uuid -> the state the engine first saw the object in, until the daemon answers its
        // register (the addon's `reconnect_base`): the scene as loaded — what its file held,
        // last synced or saved — for the objects of the scene when the engine was made or a
        // scene was opened (MarkAllDirty), else the state it was registered with. The base of
        // an object the daemon already knows (`updated`/`unchanged`) whose synced state this
        // session has not recorded yet (a reload, a reopened scene). A person's edit made
        // before the answer differs from it in the parts the person changed: only those are
        // sent, and a replay applies its other parts and undoes none of them (§6.6).
        readonly Dictionary<string, ObjectState> reconnectBase = new Dictionary<string, ObjectState>(StringComparer.Ordinal);
        // Objects a person edited before this session knew any base of them (not in the scene
        // when the engine first saw it, edited before their first register): all of them is
        // local work, sent whole once the daemon answers, and no replay lands over it (§6.6).
        readonly HashSet<string> editedBeforeBase = new HashSet<string>(StringComparer.Ordinal);
        readonly Dictionary<string, List<string>> pendingRegister = new Dictionary<string, List<string>>();
        readonly Dictionary<string, List<KeyValuePair<string, ObjectState>>> pendingChange = new Dictionary<string, List<KeyValuePair<string, ObjectState>>>();
        // uuid -> when its change was acknowledged `queued`; removed by a batch_result naming it.
        readonly Dictionary<string, DateTime> awaitingResult = new Dictionary<string, DateTime>();
        // Local work a replay must not undo (§6.6): uuid -> request ids of the `change` messages naming
        // it that are not resolved yet (no batch_result naming the uuid, not refused). Kept across
        // reconnects: a change sent on a connection that died is marked LostRequest.
        readonly Dictionary<string, HashSet<string>> unresolved = new Dictionary<string, HashSet<string>>();
        const string LostRequest = "(connection lost)";
        // uuids with a change in flight that is not only fast-path ops: nothing else of them is
        // sent until it ends. While only fast-path changes of a uuid are in flight, an edit of
        // fast-path parts only goes at once (a drag reaches the other editor continuously, §6.6).
        readonly HashSet<string> slowInFlight = new HashSet<string>(StringComparer.Ordinal);
        // uuid -> request id -> the parts (`change.op` names, §6.1) that change carried, for the
        // requests still in `unresolved` (`LostRequest`: what the changes lost with a connection
        // carried), kept across reconnects: what a replay merge or a batch must leave to the person
        // (§6.4, §6.6). Per request: a rename whose result came is not the person's any more while
        // the moves of a drag sent after it are still on their way.
        readonly Dictionary<string, Dictionary<string, HashSet<string>>> sentParts = new Dictionary<string, Dictionary<string, HashSet<string>>>();
        // uuid -> a person's unsent ops that lose to the batch being applied — of an object it
        // deletes (ReportDeletedOver), a reparent looping with one of its reparents
        // (LeaveOutLoops): sent after its answer, from the base before the batch.
        readonly Dictionary<string, List<object>> lostOver = new Dictionary<string, List<object>>(StringComparer.Ordinal);
        // Kept (not synced) uuids whose reparent a batch's reparent loops with (LeaveOutLoops):
        // their whole state is sent after its answer, from the base before the batch.
        readonly HashSet<string> keptLost = new HashSet<string>(StringComparer.Ordinal);
        // uuid -> the parent a batch's reparent left out for a loop gave it (LeaveOutLoops): the
        // daemon holds it, so the object goes under it once that is no loop here any more
        // (AttachLoopWaiting), unless another parent of it arrives or the person reparents it.
        readonly Dictionary<string, string> loopWaiting = new Dictionary<string, string>(StringComparer.Ordinal);
        // Of those, the ones whose batch's result has not arrived yet: uuid -> batch id. The daemon
        // holds that parent only if the batch commits: rolled back, or its result lost with the
        // connection (the replay after the reconnect restates the object if it committed), they
        // wait no more (PROTOCOL §6.4).
        readonly Dictionary<string, string> loopWaitingFrom = new Dictionary<string, string>(StringComparer.Ordinal);
        // Uuids whose own change in flight a batch's reparent looped with here (LeaveOutLoops) →
        // the seq before that batch, and those of edits made while away sent from their seq
        // (SendInRuns), until that change is resolved: sent again after a lost connection, it
        // goes from that seq, not `awaySeq` — this editor never held the batch's reparent, so
        // the daemon tells a conflict (STALE) from a loop it knew of.
        readonly Dictionary<string, long> flightBase = new Dictionary<string, long>(StringComparer.Ordinal);
        // A person's deletes go as `tombstone` requests (PROTOCOL §5, §6.2: the delete is the
        // later writer and wins): request id -> its uuids, and every uuid awaiting its ack.
        readonly Dictionary<string, List<string>> pendingTombstones = new Dictionary<string, List<string>>();
        readonly HashSet<string> tombstoning = new HashSet<string>(StringComparer.Ordinal);
        // uuids whose full state is sent as `create` (or, deleted here, as a `tombstone`) on the next
        // ProcessDirty: kept over a replay, or awaiting a batch_result when the connection dropped.
        readonly HashSet<string> resendFull = new HashSet<string>();
        // Not-synced uuids edited while their full state was on its way (`MarkDirty`).
        readonly HashSet<string> editedWhileFullSent = new HashSet<string>(StringComparer.Ordinal);
        // Edits made while away (PROTOCOL §6.6): they go from the seq they were made on
        // (`awaySeq`, this editor's seq when it connected), not the replay's, so the daemon can
        // tell they were made without another editor's newer change (a reparent closing a
        // cycle with one is a conflict, §6.1). `away`: what waited to be read when the first
        // replay since connecting was applied; `replayed`: the uuids that replay brought (a
        // whole `create` of one goes from the current seq: from the older one it is stale beside
        // any part another editor changed).
        long awaySeq = -1;
        bool firstReplayDue;
        readonly HashSet<string> away = new HashSet<string>(StringComparer.Ordinal);
        readonly HashSet<string> replayed = new HashSet<string>(StringComparer.Ordinal);
        // Local work whose propagation failed (batch_result kept_local, PROTOCOL §6.8): uuid -> reason.
        // The scene keeps it; it is re-sent in full on the next edit, when a peer (re)joins, or when
        // a parent it names arrives; a committed batch_result naming it clears it.
        readonly Dictionary<string, string> notSynced = new Dictionary<string, string>();
        // uuid -> the ops of the person's changes here that a rollback left kept, not synced
        // (`kept_local`): still the person's while it stays not synced — another editor's full
        // state of the object never takes them away (PROTOCOL §6.4; `KeptParts`).
        readonly Dictionary<string, HashSet<string>> keptParts = new Dictionary<string, HashSet<string>>(StringComparer.Ordinal);
        // batch_id → uuid → what another editor's full state in that batch overwrote of an object
        // kept here not synced: put back if the batch rolls back (PROTOCOL §6.4; `UndoOvertaken`).
        readonly Dictionary<string, Dictionary<string, Overtaken>> overtook = new Dictionary<string, Dictionary<string, Overtaken>>(StringComparer.Ordinal);

        sealed class Overtaken
        {
            public ObjectState Before;   // the object before the batch
            public ObjectState LastSent; // what was last sent or applied of it then (`synced`), or null
            public byte[] Mesh;          // its geometry then, when the batch brought another (else null)
            public ObjectState Theirs;   // the batch's full state of it
            public long Seq;             // the batch's seq (a lost result is asked for from before it)
        }
        // Those whose batch_result a lost connection took: after the reconnect a `resync` from
        // before the oldest of them (`overtookProbe`, its request id) tells committed from rolled
        // back, and until it is read those objects are not sent (PROTOCOL §6.4; `AskOvertaken`).
        readonly Dictionary<string, Dictionary<string, Overtaken>> overtookUnheard = new Dictionary<string, Dictionary<string, Overtaken>>(StringComparer.Ordinal);
        string overtookProbe;
        // batch_id → its result (outcome, `through`), when it came before the batch was applied
        // here: read once it is (`OvertookEnded`).
        readonly Dictionary<string, KeyValuePair<string, Dictionary<string, string>>> earlyResults = new Dictionary<string, KeyValuePair<string, Dictionary<string, string>>>(StringComparer.Ordinal);
        // Of those, the ones kept after an INVALID_FIELD refusal (e.g. a reparent that would close a
        // parent cycle with the daemon's committed parents): also re-sent when the parents may
        // have changed — a change of this editor commits, or a batch with a create, reparent or
        // delete is applied (PROTOCOL §6.4).
        readonly HashSet<string> refusedInvalid = new HashSet<string>(StringComparer.Ordinal);
        // Peers that joined so far (`peers` naming a new session), and the count when each uuid's
        // last change was sent: a change kept after a rollback is re-sent at once when a peer
        // joined after it was sent — that peer never saw it, and its join came before the result
        // (PROTOCOL §6.4).
        long peerJoins;
        readonly Dictionary<string, long> sentAtJoins = new Dictionary<string, long>();
        readonly List<Peer> peers = new List<Peer>();
        readonly List<string> otherProjects = new List<string>();
        readonly List<OtherProject> otherProjectsWithClients = new List<OtherProject>();
        // What the status view shows (StatusView): the last collisions and conflicts, bounded.
        public const int MaxRemembered = 100;
        readonly List<CollisionInfo> collisions = new List<CollisionInfo>();
        readonly List<ConflictInfo> conflicts = new List<ConflictInfo>();
        // uuids the daemon holds as synced at least once on this connection (a committed or dropped
        // batch_result naming them, an applied batch, a register that found them): first-sync progress.
        readonly HashSet<string> confirmed = new HashSet<string>();
        // uuid -> seq of the last committed batch_result that ended this editor's change of it: an
        // older replay is stale for the uuid (§6.6).
        readonly Dictionary<string, long> committedSeq = new Dictionary<string, long>();
        // Batches received between fences (this editor a participant): batch id -> the uuids whose
        // change the daemon had acknowledged when its batch_begin arrived. Their batch_result ends
        // only those (§6.4): a change a batch carries is acknowledged before the batch is forwarded.
        readonly Dictionary<string, HashSet<string>> receivedBatches = new Dictionary<string, HashSet<string>>();
        readonly Queue<string> receivedOrder = new Queue<string>();
        const int MaxReceivedBatches = 4096;
        // Batches applied here that create, reparent or delete, until their batch_result: when
        // one commits, what was refused as a loop goes again (ParentsChanged) — the daemon reads
        // a change against its committed parents, and a batch's are committed only then (§6.1).
        readonly HashSet<string> structuralBatches = new HashSet<string>(StringComparer.Ordinal);
        readonly Queue<string> structuralOrder = new Queue<string>();
        // Complete batches waiting, in arrival order, for the acks of changes naming a resync's uuids.
        readonly Queue<IncomingBatch> waitingForAcks = new Queue<IncomingBatch>();
        int heldWhilePaused; // batches answered `held` during the current pause
        // Fresh uuids (IAdoptingScene) waiting for the first replay: neither registered nor sent
        // until it has arrived (or AdoptWaitLimit has passed), then matched (Adoption.Match).
        readonly HashSet<string> adoptable = new HashSet<string>();
        Stopwatch adoptWait;
        // A scene opened with what its file kept of what it last synced (`TakeBasesAtLoad`):
        // its objects are registered after the first replay since connecting (`replayWait`,
        // at most AdoptWaitLimit), which may delete some of them — another editor's delete made
        // while the scene was closed. Registered before, such an object's daemon record was
        // made live again for an object in no editor (PROTOCOL.md §5, §6.6).
        bool registerAfterReplay;
        Stopwatch replayWait;
        IncomingBatch current;
        long lastSeq;
        long requestCounter;
        bool initialRegisterDone;
        bool userActive;
        readonly Stopwatch sinceUserEdit = new Stopwatch();
        int registerStats_registered, registerStats_updated, registerStats_unchanged, registerStats_collision, registerStats_error;

        /// <param name="savedBases">What the scene file kept, when it was saved, of what it had
        /// last synced of each object (`BaseSnapshot`), or null: the base of a person's edits
        /// made and saved while the daemon was away (PROTOCOL.md §6.6).</param>
        public SyncEngine(BridgeClient client, ISceneAdapter scene, double unitScale = 1.0, IDictionary<string, ObjectState> savedBases = null)
        {
            if (client == null) throw new ArgumentNullException("client");
            if (scene == null) throw new ArgumentNullException("scene");
            if (!(unitScale > 0) || double.IsInfinity(unitScale)) throw new ArgumentOutOfRangeException("unitScale", "must be finite and > 0");
            this.client = client;
            this.scene = scene;
            this.unitScale = unitScale;
            if (client.Options.LastSeq == null) client.Options.LastSeq = () => LastSeq;
            TakeBasesAtLoad(scene.CaptureAll(), savedBases); // the scene as it was opened, before any edit
        }

        /// <summary>
        /// The objects as the engine first sees them, the scene just loaded (the engine made, a
        /// scene opened): each one's base (`reconnectBase`) until the daemon answers its register
        /// is what the scene file kept of what it last synced (`saved`), else its state as
        /// loaded, so that a person's edit made before the answer — or made and saved while the
        /// daemon was away — is told from what the daemon holds, and only its parts are the
        /// person's (PROTOCOL.md §6.6). An object that differs from its saved base is local work
        /// (dirty); one the saved base names and the scene no longer holds was deleted by its
        /// person while the daemon was away: its `tombstone` goes once the register is answered.
        /// </summary>
        void TakeBasesAtLoad(IEnumerable<ObjectState> states, IDictionary<string, ObjectState> saved = null)
        {
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var s in states)
            {
                if (s == null) continue;
                seen.Add(s.Uuid);
                if (synced.ContainsKey(s.Uuid) || editedBeforeBase.Contains(s.Uuid)) continue;
                ObjectState kept;
                if (saved != null && saved.TryGetValue(s.Uuid, out kept))
                {
                    reconnectBase.Remove(s.Uuid);
                    if (kept == null)
                    {
                        // Its change had no outcome when the file was saved: all of it is the
                        // person's, sent whole (as an edit made before any base was known).
                        editedBeforeBase.Add(s.Uuid);
                        dirty.Add(s.Uuid);
                        continue;
                    }
                    reconnectBase[s.Uuid] = kept.Clone();
                    if (!StateDiff.NearlyEquals(kept, s)) dirty.Add(s.Uuid);
                }
                else if (!reconnectBase.ContainsKey(s.Uuid)) reconnectBase[s.Uuid] = s;
            }
            if (saved == null) return;
            if (saved.Count > 0) registerAfterReplay = true;
            foreach (var kv in saved)
            {
                if (kv.Value == null || seen.Contains(kv.Key) || synced.ContainsKey(kv.Key)) continue;
                reconnectBase[kv.Key] = kv.Value.Clone();
                dirty.Add(kv.Key);
            }
        }

        /// <summary>Objects deleted here whose `tombstone` has not been answered yet (to be sent,
        /// in flight, or refused): a scene saved now keeps their bases, so that the delete is
        /// sent when it is loaded again (`BaseSnapshot`).</summary>
        public List<string> DeletedHere()
        {
            var l = new List<string>();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var set in new IEnumerable<string>[] { dirty, tombstoning, notSynced.Keys })
                foreach (var u in set)
                    if (seen.Add(u) && !scene.Holds(u) && (tombstoning.Contains(u) || Base(u) != null)) l.Add(u);
            return l;
        }

        /// <summary>
        /// What a scene file keeps as it is saved, for these uuids (its objects): the base of each
        /// one's later edits (`Base`: what it last synced, else its base until the daemon answers
        /// its register). Given back to the engine when the scene is loaded again (the constructor's
        /// `savedBases`, `MarkAllDirty`), it tells a person's edits made while the daemon was away
        /// from what the daemon holds (PROTOCOL.md §6.6). A uuid whose change had no outcome yet
        /// (in flight, kept as not synced, or edited before any base was known) maps to null:
        /// loaded again, all of it is the person's and is sent whole.
        /// </summary>
        public Dictionary<string, ObjectState> BaseSnapshot(IEnumerable<string> uuids)
        {
            var d = new Dictionary<string, ObjectState>(StringComparer.Ordinal);
            foreach (var u in uuids)
            {
                if (u == null) continue;
                var b = Base(u);
                bool deleted = !scene.Holds(u);
                if (!deleted && (editedBeforeBase.Contains(u) || unresolved.ContainsKey(u) || notSynced.ContainsKey(u) || resendFull.Contains(u)))
                    d[u] = null;
                else if (b != null)
                    d[u] = b.Clone(); // deleted here with its delete unanswered too: sent when loaded again
            }
            return d;
        }

        /// <summary>Raised on the Tick thread: (event name, fields). The headless host prints these.</summary>
        public event Action<string, Dictionary<string, object>> Event;

        public BridgeClient Client { get { return client; } }
        public long LastSeq { get { return Interlocked.Read(ref lastSeq); } set { Interlocked.Exchange(ref lastSeq, value); } }
        public bool SafeMode { get; private set; }
        public string SafeModeReason { get; private set; }
        public bool Paused { get; private set; }
        public string SessionId { get; private set; }
        public long DaemonSeq { get; private set; }
        public int TrackedObjects { get { return synced.Count; } }
        public int DirtyCount { get { return dirty.Count; } }
        public bool InitialRegisterDone { get { return initialRegisterDone; } }
        public bool BatchInProgress { get { return current != null || waitingForAcks.Count > 0; } }
        /// <summary>uuids with local changes not yet resolved (a replay does not overwrite them, §6.6).</summary>
        public int UnresolvedCount { get { return unresolved.Count; } }
        /// <summary>True when the uuid has local changes a replay must not undo (§6.6).</summary>
        public bool HasUnresolvedLocalWork(string uuid) { return HasLocalWork(uuid); }
        /// <summary>The last error, as one line ("CODE: message" for the daemon's).</summary>
        public string LastError { get; private set; }
        /// <summary>The last error's code (the daemon's, or the code of a refusal), null for the editor's own failures.</summary>
        public string LastErrorCode { get; private set; }
        public string LastErrorMessage { get; private set; }
        /// <summary>Why sync is paused (SetPaused), null when it is not.</summary>
        public string PauseReason { get; private set; }
        /// <summary>uuids kept locally after a failed propagation, with the reason (shown in the window).</summary>
        public IDictionary<string, string> NotSynced { get { return notSynced; } }
        /// <summary>The other scene-holding sessions of the project (`peers` event, PROTOCOL §6.8).</summary>
        public IList<Peer> Peers { get { return peers; } }
        /// <summary>Other projects that have scene-holding sessions (warn when alone in this one).</summary>
        public IList<string> OtherProjects { get { return otherProjects; } }
        /// <summary>The same, with the editor kinds each has (`peers.other_projects[].clients`).</summary>
        public IList<OtherProject> OtherProjectsWithClients { get { return otherProjectsWithClients; } }
        /// <summary>The last uuid collisions the daemon reported (this editor's object got a fresh uuid), oldest first.</summary>
        public IList<CollisionInfo> Collisions { get { return collisions; } }
        /// <summary>The last `conflict` events (PROTOCOL §6.2), oldest first.</summary>
        public IList<ConflictInfo> Conflicts { get { return conflicts; } }

        /// <summary>Batches this editor received and has not applied yet, and why (status view).</summary>
        public int DeferredBatches { get { return Paused ? heldWhilePaused : waitingForAcks.Count; } }
        public string DeferredReason
        {
            get
            {
                if (Paused) return "paused: " + (PauseReason ?? "by the user") + " (answered `held`; a resync brings them after the pause)";
                return waitingForAcks.Count > 0 ? "waiting for the daemon's ack of this editor's own changes to the same objects" : null;
            }
        }

        /// <summary>
        /// First-sync progress: of the objects this editor tracks, how many the daemon has confirmed as
        /// synced since the connection began (committed or dropped results, applied batches, objects
        /// the register found known). Linear in the tracked objects: call it a few times a second at most.
        /// </summary>
        public SyncProgress Progress()
        {
            var p = new SyncProgress();
            foreach (var u in synced.Keys) { p.Total++; if (confirmed.Contains(u)) p.Synced++; }
            foreach (var u in registering) if (!synced.ContainsKey(u)) p.Total++;
            foreach (var u in adoptable) if (!synced.ContainsKey(u) && !registering.Contains(u)) p.Total++;
            return p;
        }
        /// <summary>The project this session is in (from `welcome`).</summary>
        public string ProjectId { get; private set; }

        // ------------------------------------------------------------------ counters (status, tests)

        /// <summary>`change` messages sent, and the change ops in them.</summary>
        public long ChangeMessagesSent { get; private set; }
        public long ChangeOpsSent { get; private set; }
        /// <summary>Change ops the daemon refused (ack result `error`).</summary>
        public long ChangeErrors { get; private set; }
        /// <summary>Forwarded batches applied (any path, including resync).</summary>
        public long BatchesApplied { get; private set; }
        public long ResyncBatchesApplied { get; private set; }
        /// <summary>Batches answered `held` (Play Mode).</summary>
        public long BatchesHeld { get; private set; }
        /// <summary>Batches that could not be applied (malformed, or the scene refused them).</summary>
        public long BatchesFailed { get; private set; }
        public long BatchResults { get; private set; }
        public long BatchesCommitted { get; private set; }
        public long BatchesRolledBack { get; private set; }
        public long ResyncsRequested { get; private set; }
        /// <summary>Objects that took back the uuid the daemon knows them by (Adoption, PROTOCOL §6.6).</summary>
        public long Adopted { get; private set; }
        /// <summary>How long fresh uuids wait for the first replay before they are sent as new objects.</summary>
        public TimeSpan AdoptWaitLimit = TimeSpan.FromSeconds(10);
        /// <summary>uuids of resync batches not applied because this editor had unresolved local work (§6.6).</summary>
        public long ReplayKeptLocal { get; private set; }
        /// <summary>Live previews applied, and dropped (the batch brings their state).</summary>
        public long LiveApplied { get; private set; }
        public long LiveDropped { get; private set; }

        /// <summary>Every counter by name (the headless host prints these).</summary>
        public Dictionary<string, object> Stats()
        {
            return new Dictionary<string, object>
            {
                { "change_messages", ChangeMessagesSent }, { "change_ops", ChangeOpsSent }, { "change_errors", ChangeErrors },
                { "batches_applied", BatchesApplied }, { "resync_batches_applied", ResyncBatchesApplied },
                { "batches_held", BatchesHeld }, { "batches_failed", BatchesFailed },
                { "batch_results", BatchResults }, { "committed", BatchesCommitted }, { "rolled_back", BatchesRolledBack },
                { "not_synced", (long)notSynced.Count }, { "in_flight", (long)InFlightCount }, { "peers", (long)peers.Count }, { "project_id", ProjectId },
                { "resyncs_requested", ResyncsRequested }, { "replay_kept_local", ReplayKeptLocal }, { "adopted", Adopted }, { "last_seq", LastSeq }, { "tracked", (long)synced.Count },
                { "live_applied", LiveApplied }, { "live_dropped", LiveDropped }, { "mesh_bytes_sent", MeshBytesSent },
                { "safe_mode", SafeMode }, { "safe_mode_reason", SafeModeReason },
            };
        }

        /// <summary>
        /// Nothing in flight as far as this editor knows: no dirty object, nothing queued for the
        /// socket, every `register`/`change` acknowledged, no batch between its fences, and every
        /// queued change's uuid named by a `batch_result` (or older than ResultWaitLimit).
        /// </summary>
        public bool Idle
        {
            get
            {
                if (dirty.Count > 0 || current != null || waitingForAcks.Count > 0 || pendingChange.Count > 0 || pendingRegister.Count > 0) return false;
                if (client.OutgoingCount > 0 || client.IncomingCount > 0) return false;
                if (awaitingResult.Count == 0) return true;
                var now = DateTime.UtcNow;
                foreach (var kv in awaitingResult) if (now - kv.Value < ResultWaitLimit) return false;
                return true;
            }
        }

        /// <summary>Changes acknowledged `queued` whose batch_result has not arrived yet.</summary>
        public int AwaitingResults { get { return awaitingResult.Count; } }

        /// <summary>
        /// Called with every `applied` answer's hashes just before it is sent (not for `held`
        /// answers). Test hosts use it to send wrong hashes on purpose; the editor leaves it null.
        /// </summary>
        public Action<IncomingBatch, IDictionary<string, string>> BeforeAppliedSent;

        string NextRequestId(string prefix) { return prefix + (++requestCounter); }

        void Emit(string name, Dictionary<string, object> fields)
        {
            var h = Event;
            if (h != null) h(name, fields ?? new Dictionary<string, object>());
        }

        void Fail(string what, string requestId = null, string code = null)
        {
            LastError = code == null ? what : code + ": " + what;
            LastErrorCode = code;
            LastErrorMessage = what;
            var f = new Dictionary<string, object> { { "message", what } };
            if (requestId != null) f["request_id"] = requestId;
            Emit("error", f);
        }

        // ------------------------------------------------------------------ host API

        /// <summary>Marks an object whose state may have changed (created, edited, deleted).</summary>
        public void MarkDirty(string uuid)
        {
            if (Paused || uuid == null) return; // Play Mode edits are not synced
            if (!initialRegisterDone && !synced.ContainsKey(uuid) && !reconnectBase.ContainsKey(uuid)) editedBeforeBase.Add(uuid);
            dirty.Add(uuid);
            if (!notSynced.ContainsKey(uuid)) return;
            // Retried in full on the next edit (§6.8) — unless its full state is on its way: the
            // edit then waits for that one's result and goes as the parts the person changed once
            // it commits. In full it also carried what this editor applied of another editor's
            // batch meanwhile, as this person's: a hide the other person had undone came back over
            // their last edit (the random edits test, seed 12).
            if (FullStateOnItsWay(uuid)) editedWhileFullSent.Add(uuid);
            else resendFull.Add(uuid);
        }

        /// <summary>A change carrying the uuid's whole state (`create`) is in flight.</summary>
        bool FullStateOnItsWay(string uuid)
        {
            if (!InFlight(uuid)) return false;
            var parts = SentPartsOf(uuid);
            return parts != null && parts.Contains(Ops.Create);
        }

        /// <summary>A person's edit kept after a VERIFY_TIMEOUT goes again by itself after these
        /// pauses, one per timeout in a row (PROTOCOL §6.4); the same as the Blender addon.</summary>
        public static TimeSpan[] TimeoutRetry = { TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(30), TimeSpan.FromSeconds(60) };
        /// <summary>A person's edit kept after a VERIFY_MISMATCH that other uuids of the batch
        /// caused (`mismatched`) goes again by itself after these pauses, counted with the
        /// timeouts in `retriesInARow` (PROTOCOL §6.4); the same as the Blender addon.</summary>
        public static TimeSpan[] CollateralRetry = { TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(30) };
        static readonly TimeSpan RetryLaterPauseMin = TimeSpan.FromMilliseconds(250), RetryLaterPauseMax = TimeSpan.FromSeconds(4);
        readonly Stopwatch clock = Stopwatch.StartNew();
        readonly Dictionary<string, int> retriesInARow = new Dictionary<string, int>(StringComparer.Ordinal);
        readonly Dictionary<string, TimeSpan> retryAt = new Dictionary<string, TimeSpan>(StringComparer.Ordinal);
        // Kept uuids whose person edited them again before the kept result came: that later change,
        // still on its way then, carries only its own parts. Sent again in full once it has its
        // result, and its commit ends no mark (PROTOCOL §6.4).
        readonly HashSet<string> editedAgain = new HashSet<string>(StringComparer.Ordinal);
        readonly Stopwatch retryLaterClock = Stopwatch.StartNew();

        /// <summary>Whole-request refusals that say "not run, try again later" (PROTOCOL §2 rate
        /// limits, §4); the Blender addon's `engine.RETRY_LATER`.</summary>
        static bool RetryLater(string code) { return code == ErrorCode.RateLimited || code == ErrorCode.StorageFailed; }
        TimeSpan retryLaterPause = TimeSpan.Zero, nextRetryLaterPause = RetryLaterPauseMin;

        // mesh hash -> the request carrying it while unanswered, "" once the daemon took it (§6.1).
        readonly Dictionary<string, string> daemonMeshes = new Dictionary<string, string>(StringComparer.Ordinal);
        // request -> the changes in it that only named their mesh (uuid -> mesh hash), while
        // unanswered: an INVALID_FIELD refusal of one of them says the daemon no longer holds that
        // mesh (§6.1: it removes meshes nothing references), and it goes again with it.
        readonly Dictionary<string, Dictionary<string, string>> namedMeshes = new Dictionary<string, Dictionary<string, string>>(StringComparer.Ordinal);
        /// <summary>Bytes of mesh attachments sent (each geometry once per connection).</summary>
        public long MeshBytesSent { get; private set; }

        /// <summary>The daemon answered `rid`: the meshes it carried are held there (`taken`) or go
        /// again with the next object that names them.</summary>
        void MeshesAnswered(string rid, bool taken)
        {
            var carried = new List<string>();
            foreach (var kv in daemonMeshes) if (kv.Value == rid) carried.Add(kv.Key);
            foreach (var h in carried) { if (taken) daemonMeshes[h] = ""; else daemonMeshes.Remove(h); }
            namedMeshes.Remove(rid);
        }

        /// <summary>The kept uuids whose pause after a rollback that said nothing against them (a
        /// VERIFY_TIMEOUT, or a VERIFY_MISMATCH of other uuids) has passed go again in full.</summary>
        void RetryDue(TimeSpan now)
        {
            var due = new List<string>();
            foreach (var kv in retryAt) if (kv.Value <= now) due.Add(kv.Key);
            foreach (var u in due) retryAt.Remove(u);
            if (due.Count > 0) RetryNotSynced(due, "rolled back for a reason other than this edit; sent again");
        }

        /// <summary>Re-sends every not-synced uuid in full (a retry trigger of PROTOCOL §6.8).</summary>
        public void RetryNotSynced(string why)
        {
            RetryNotSynced(new List<string>(notSynced.Keys), why);
        }

        /// <summary>Re-sends these uuids in full where they are not synced here.</summary>
        void RetryNotSynced(IEnumerable<string> uuids, string why)
        {
            long n = 0;
            foreach (var u in uuids)
            {
                if (u == null || !notSynced.ContainsKey(u)) continue;
                resendFull.Add(u);
                dirty.Add(u);
                n++;
            }
            if (n > 0) Emit("retry_not_synced", new Dictionary<string, object> { { "count", n }, { "why", why } });
        }

        /// <summary>
        /// Kept uuids refused INVALID_FIELD go again, in full: the parents the daemon read them
        /// against may have changed (e.g. a kept reparent of one of their parents, which the daemon
        /// did not have when it refused them as a loop, has committed since). Refused again, they
        /// stay kept until the next such change.
        /// </summary>
        void ParentsChanged(string why)
        {
            if (refusedInvalid.Count == 0) return;
            refusedInvalid.RemoveWhere(u => !notSynced.ContainsKey(u));
            RetryNotSynced(new List<string>(refusedInvalid), why);
        }

        /// <summary>
        /// Objects kept here, not synced (their batch rolled back), that are under an object
        /// <paramref name="b"/> deletes. The scene leaves them at the root where they stand
        /// (PROTOCOL.md §6.1 `delete`), and their kept edit — sent again only when the person
        /// edits them again, say — named a parent that is gone: they are sent again, whole, as
        /// they stand. Kept, they stayed apart from the other editor for good (it never held
        /// them under that parent: e.g. its person deleted the parent while this editor's
        /// reparent under it was on its way, and its answer rolled that back).
        /// </summary>
        List<string> KeptUnderDeleted(IncomingBatch b)
        {
            var under = new List<string>();
            if (notSynced.Count == 0) return under;
            HashSet<string> deleting = null;
            foreach (var c in b.Changes)
            {
                if (c.Op != Ops.Delete) continue;
                if (deleting == null) deleting = new HashSet<string>(StringComparer.Ordinal);
                deleting.Add(c.Uuid);
            }
            if (deleting == null) return under;
            foreach (var u in notSynced.Keys)
            {
                var st = scene.Capture(u);
                if (st != null && st.Parent != null && deleting.Contains(st.Parent)) under.Add(u);
            }
            return under;
        }

        /// <summary>`quarantine_released` (PROTOCOL §6.8): a person released these uuids; what
        /// this editor kept of them (not synced) is sent again in full.</summary>
        void OnQuarantineReleased(Dictionary<string, object> m)
        {
            object v;
            var uuids = new List<string>();
            if (m.TryGetValue("uuids", out v) && v is List<object>)
                foreach (var x in (List<object>)v) if (x is string) uuids.Add((string)x);
            RetryNotSynced(uuids, "a quarantine was released");
        }

        /// <summary>
        /// Stops tracking objects without telling the daemon they were deleted (their scene was
        /// closed, not their objects deleted). They are registered again when they reappear.
        /// </summary>
        public void Forget(IEnumerable<string> uuids)
        {
            foreach (var u in uuids)
            {
                synced.Remove(u);
                appliedHash.Remove(u);
                dirty.Remove(u);
                Resolved(u);
                resendFull.Remove(u);
                notSynced.Remove(u);
                reconnectBase.Remove(u);
                editedBeforeBase.Remove(u);
                committedSeq.Remove(u);
                sentAtJoins.Remove(u);
            }
        }

        /// <summary>
        /// Marks every object dirty (a scene was opened): new objects get registered, known ones
        /// diff to nothing. The objects the engine sees here for the first time take the state
        /// they hold now, as loaded, as their base until the daemon answers their register.
        /// </summary>
        /// <param name="savedBases">What the opened scene's file kept of what it last synced
        /// (`BaseSnapshot`), or null.</param>
        public void MarkAllDirty(IDictionary<string, ObjectState> savedBases = null)
        {
            if (Paused) return;
            var all = scene.CaptureAll();
            TakeBasesAtLoad(all, savedBases); // a scene just opened: its objects as its file kept them
            foreach (var s in all) dirty.Add(s.Uuid);
            foreach (var u in synced.Keys) dirty.Add(u);
        }

        /// <summary>A copy of the synced state (taken before Play Mode).</summary>
        public Dictionary<string, ObjectState> Snapshot()
        {
            var d = new Dictionary<string, ObjectState>();
            foreach (var kv in synced) d[kv.Key] = kv.Value.Clone();
            return d;
        }

        /// <summary>Enter (true) or leave (false) a pause such as Play Mode.</summary>
        public void SetPaused(bool paused, Dictionary<string, ObjectState> restoreSnapshot = null, string reason = null)
        {
            if (paused == Paused) return;
            Paused = paused;
            PauseReason = paused ? (reason ?? StatusView.PlayModePause) : null;
            if (paused)
            {
                dirty.Clear();
                Emit("paused", null);
                return;
            }
            if (restoreSnapshot != null) RestoreSnapshot(restoreSnapshot);
            dirty.Clear();
            foreach (var u in resendFull) dirty.Add(u); // kept over a replay before Play: still to send
            if (client.IsConnected && !initialRegisterDone && pendingRegister.Count == 0)
            {
                if (registerAfterReplay) { if (replayWait == null) AwaitReplay(); }
                else RegisterAll();
            }
            // Held batches are not applied: the daemon re-sends what changed since LastSeq (§6.4).
            int heldCount = heldWhilePaused;
            heldWhilePaused = 0;
            RequestResync();
            if (overtookUnheard.Count > 0 && client.IsConnected) AskOvertaken();
            Emit("resumed", new Dictionary<string, object> { { "held", (long)heldCount }, { "last_seq", LastSeq } });
        }

        /// <summary>Puts objects that differ from the snapshot back (after Play Mode) in one undo step.</summary>
        public int RestoreSnapshot(Dictionary<string, ObjectState> snapshot)
        {
            var batch = new IncomingBatch { BatchId = "restore", Seq = LastSeq, Path = BatchPath.Resync };
            foreach (var kv in snapshot)
            {
                var cur = scene.Capture(kv.Key);
                if (StateDiff.NearlyEquals(cur, kv.Value)) continue;
                foreach (var op in StateDiff.Diff(cur, kv.Value, StateHash.Epsilon, unitScale))
                {
                    if ((string)op["op"] == Ops.Mesh) continue; // mesh data is not snapshotted; Unity reverts meshes itself
                    batch.Changes.Add(RemoteChange.Parse(op, null, unitScale));
                }
            }
            batch.Count = batch.Changes.Count;
            if (batch.Count > 0)
            {
                try { scene.ApplyBatch(batch); }
                catch (Exception e) { Fail("restoring the pre-Play state failed: " + e.Message); }
            }
            foreach (var kv in snapshot)
            {
                var now = scene.Capture(kv.Key);
                if (now != null) { synced[kv.Key] = now; appliedHash[kv.Key] = now.Hash(); }
            }
            return batch.Count;
        }

        /// <summary>
        /// Says this connection closes on purpose (`editor_state` `closing`, PROTOCOL §6.8): a batch
        /// the editor leaves unanswered is then no evidence against the data (§6.7), and a person's
        /// change in it goes again unchanged. Call right before closing the connection (quitting, a
        /// domain reload); send nothing after it.
        /// </summary>
        public void Closing(string reason)
        {
            if (!client.IsConnected) return;
            client.Send(new Dictionary<string, object>
            {
                { "type", MessageType.EditorState }, { "state", EditorRunState.Closing }, { "reason", reason ?? "" },
            });
        }

        /// <summary>Asks the daemon to replay what changed after LastSeq (PROTOCOL §6.6).</summary>
        public void RequestResync()
        {
            if (!client.IsConnected) return; // hello.last_seq replays on the next connection
            string rid = NextRequestId("y");
            if (client.Send(Msg.Resync(rid, LastSeq)))
            {
                ResyncsRequested++;
                Emit("resync_requested", new Dictionary<string, object> { { "since_seq", LastSeq }, { "request_id", rid } });
            }
        }

        /// <summary>Main-thread work: drain incoming messages within the budget, then send local changes.</summary>
        public void Tick(TimeSpan budget)
        {
            var sw = Stopwatch.StartNew();
            client.Pump(Handle, budget);
            if (retryAt.Count > 0 && client.IsConnected) RetryDue(clock.Elapsed);
            TimeSpan left = budget - sw.Elapsed;
            if (left < TimeSpan.FromMilliseconds(1)) left = TimeSpan.FromMilliseconds(1);
            ProcessDirty(left);
            if (replayWait != null && replayWait.Elapsed > AdoptWaitLimit && client.IsConnected)
            {
                Emit("replay_timeout", new Dictionary<string, object> { { "waited_ms", (long)replayWait.Elapsed.TotalMilliseconds } });
                EndReplayWait();
            }
            if (adoptWait != null && adoptWait.Elapsed > AdoptWaitLimit && client.IsConnected)
            {
                Emit("adopt_timeout", new Dictionary<string, object> { { "fresh", (long)adoptable.Count } });
                OpenAdoptGate();
            }
            if (userActive && sinceUserEdit.Elapsed > UserIdleAfter && client.IsConnected)
            {
                if (client.Send(Msg.UserActivity(false))) userActive = false;
            }
        }

        // ------------------------------------------------------------------ incoming

        void Handle(ClientEvent e)
        {
            try
            {
                switch (e.Kind)
                {
                    case ClientEventKind.Connected: OnConnected(e.Welcome); break;
                    case ClientEventKind.Disconnected: OnDisconnected(e.Reason); break;
                    case ClientEventKind.Frame: OnFrame(e.Frame); break;
                }
            }
            catch (MessageFormatException ex)
            {
                Fail("daemon sent a malformed message: " + ex.Message, null, ErrorCode.BadMessage);
            }
            catch (Exception ex) // a bug here must not kill the editor's update loop
            {
                Fail("internal error while handling a daemon message: " + ex.GetType().Name + ": " + ex.Message);
            }
        }

        void OnConnected(Dictionary<string, object> welcome)
        {
            SessionId = Msg.OptStr(welcome, "session_id");
            ProjectId = Msg.OptStr(welcome, "project_id") ?? client.Options.ProjectId;
            DaemonSeq = Msg.OptLong(welcome, "seq", 0);
            SafeMode = Msg.OptBool(welcome, "safe_mode", false);
            heldReported = null; // a new session knows nothing held
            string why = Msg.OptStr(welcome, "safe_mode_reason");
            SafeModeReason = SafeMode ? (string.IsNullOrEmpty(why) ? "the daemon is in safe mode" : why) : null;
            current = null;
            awaySeq = away.Count > 0 ? Math.Min(awaySeq, LastSeq) : LastSeq;
            firstReplayDue = true;
            liveSeen.Clear(); // marks mean something on the connection that sent them only
            daemonMeshes.Clear(); // the daemon may not hold them any more (another data dir)
            namedMeshes.Clear();
            waitingForAcks.Clear();
            pendingRegister.Clear();
            registering.Clear();
            awaitingResult.Clear();
            confirmed.Clear();
            // Waiting for a loop through a batch whose result went with the old connection (§6.4).
            foreach (var w in loopWaitingFrom.Keys) loopWaiting.Remove(w);
            loopWaitingFrom.Clear();
            initialRegisterDone = false;
            registerStats_registered = registerStats_updated = registerStats_unchanged = registerStats_collision = registerStats_error = 0;
            Emit("connected", new Dictionary<string, object>
            {
                { "session_id", SessionId }, { "seq", DaemonSeq }, { "safe_mode", SafeMode }, { "last_seq", LastSeq },
            });
            // In Play Mode the scene holds runtime objects: register once back in Edit Mode.
            // The daemon sends what changed since hello.last_seq by itself; a `resync` is asked
            // for only to know when that replay has been applied (`AwaitReplay`) or to adopt.
            var adopting = scene as IAdoptingScene;
            if (adopting != null) foreach (var u in adopting.FreshUuids) adoptable.Add(u);
            if (!Paused)
            {
                if (registerAfterReplay) AwaitReplay();
                else RegisterAll();
            }
            if (adoptable.Count > 0 && !Paused) AwaitAdoption();
            if (overtookUnheard.Count > 0 && !Paused) AskOvertaken();
        }

        /// <summary>Batches that overwrote objects kept here lost their batch_result with the
        /// connection: asks for what changed from before the oldest of them (PROTOCOL §6.4). The
        /// answer names such an object only if a batch committed it: the daemon replays no state of
        /// a uuid it counts as kept here, and a rollback leaves it so (§6.6). The Blender addon's
        /// `_ask_overtaken`.</summary>
        void AskOvertaken()
        {
            long since = long.MaxValue;
            foreach (var over in overtookUnheard.Values)
                foreach (var o in over.Values) since = Math.Min(since, o.Seq);
            string rid = NextRequestId("y");
            if (!client.Send(Msg.Resync(rid, Math.Max(since - 1, 0)))) return;
            ResyncsRequested++;
            overtookProbe = rid;
        }

        /// <summary>Waits for the answer to `AskOvertaken` (never sent before it).</summary>
        bool OvertakenUnheard(string uuid)
        {
            if (overtookUnheard.Count == 0) return false;
            foreach (var over in overtookUnheard.Values) if (over.ContainsKey(uuid)) return true;
            return false;
        }

        /// <summary>The answer to `AskOvertaken`, before it is applied: what it does not name was
        /// rolled back, is put back as the person left it and goes again in full, as after a
        /// rollback heard (`UndoOvertaken`); what it names committed (`OvertakenSynced`). The Blender
        /// addon's `_settle_unheard_overtaken`.</summary>
        void SettleUnheardOvertaken(IncomingBatch b)
        {
            var named = new HashSet<string>(StringComparer.Ordinal);
            foreach (var c in b.Changes) named.Add(c.Uuid);
            var unheard = new List<KeyValuePair<string, Dictionary<string, Overtaken>>>(overtookUnheard);
            overtookUnheard.Clear();
            overtookProbe = null;
            foreach (var kv in unheard)
            {
                var committed = new Dictionary<string, Overtaken>(StringComparer.Ordinal);
                var rolledBack = new Dictionary<string, Overtaken>(StringComparer.Ordinal);
                foreach (var o in kv.Value) (named.Contains(o.Key) ? committed : rolledBack)[o.Key] = o.Value;
                if (rolledBack.Count > 0)
                {
                    UndoOvertaken(kv.Key, rolledBack);
                    RetryNotSynced(rolledBack.Keys, "batch " + kv.Key + ", whose result the lost connection took, did not commit it");
                }
                if (committed.Count > 0) OvertakenSynced(committed);
            }
        }

        /// <summary>
        /// Registration waits for the first replay since connecting (`registerAfterReplay`): a
        /// `resync` since LastSeq is always answered by one batch, after the welcome replay when
        /// there is one (§6.6), so the wait ends with the first `resync` batch applied.
        /// </summary>
        void AwaitReplay()
        {
            string rid = NextRequestId("y");
            if (!client.Send(Msg.Resync(rid, LastSeq))) { RegisterAll(); return; }
            ResyncsRequested++;
            replayWait = Stopwatch.StartNew();
        }

        /// <summary>The first replay since connecting was applied (or did not come in time):
        /// what the scene holds now is registered.</summary>
        void EndReplayWait()
        {
            replayWait = null;
            registerAfterReplay = false;
            if (client.IsConnected && !initialRegisterDone && pendingRegister.Count == 0) RegisterAll();
        }

        /// <summary>
        /// Fresh uuids wait for a replay: the daemon may know their objects under older uuids (an
        /// editor crash before the scene was saved). The request asks for the whole project
        /// (since_seq 0), so the answer names every object the daemon holds whatever LastSeq says.
        /// </summary>
        void AwaitAdoption()
        {
            string rid = NextRequestId("y");
            if (!client.Send(Msg.Resync(rid, 0))) { OpenAdoptGate(); return; }
            ResyncsRequested++;
            adoptWait = Stopwatch.StartNew();
            Emit("awaiting_adoption", new Dictionary<string, object> { { "fresh", (long)adoptable.Count }, { "request_id", rid } });
        }

        /// <summary>The first replay since connecting: fresh objects the daemon knows take their uuids back.</summary>
        void Adopt(IncomingBatch b)
        {
            var adopting = (IAdoptingScene)scene;
            var fresh = new Dictionary<string, ObjectState>();
            foreach (var u in adoptable)
            {
                var st = scene.Capture(u);
                if (st != null) fresh[u] = st;
            }
            var pairs = Adoption.Match(b.Changes, fresh, u => scene.Holds(u));
            var taken = new List<ObjectState>();
            foreach (var kv in pairs)
            {
                if (!adopting.AdoptUuid(kv.Key, kv.Value)) continue;
                adoptable.Remove(kv.Key);
                Forget(new[] { kv.Key });
                dirty.Remove(kv.Value);
                Adopted++;
                Emit("adopted", new Dictionary<string, object> { { "fresh", kv.Key }, { "uuid", kv.Value } });
                var st = scene.Capture(kv.Value);
                if (st != null) taken.Add(st);
            }
            OpenAdoptGate();
            if (taken.Count > 0) SendRegister(taken); // their editor_ref here (idempotent)
        }

        /// <summary>The rest of the fresh uuids are the objects' own: register (and create) them.</summary>
        void OpenAdoptGate()
        {
            adoptWait = null;
            if (adoptable.Count == 0) return;
            var adopting = scene as IAdoptingScene;
            var rest = new List<ObjectState>();
            foreach (var u in adoptable)
            {
                if (adopting != null) adopting.KeepFresh(u);
                var st = scene.Capture(u);
                if (st != null) rest.Add(st);
            }
            adoptable.Clear();
            if (rest.Count > 0 && client.IsConnected) SendRegister(rest);
        }

        void OnDisconnected(string reason)
        {
            // Their results will not come: the daemon tells after the reconnect (§6.4, AskOvertaken).
            foreach (var kv in overtook) overtookUnheard[kv.Key] = kv.Value;
            overtook.Clear();
            overtookProbe = null;
            earlyResults.Clear();
            // Changes sent but never acknowledged go back into the dirty set.
            var unacked = new HashSet<string>();
            foreach (var list in pendingChange.Values)
                foreach (var kv in list)
                {
                    if (kv.Value == null) synced.Remove(kv.Key); else synced[kv.Key] = kv.Value;
                    dirty.Add(kv.Key);
                    unacked.Add(kv.Key);
                }
            // Changes acknowledged but without a batch_result may not have survived (the daemon may
            // have died before writing them): their full state is sent again after the reconnect
            // (a repeat of what the daemon holds ends as `dropped`) — or, when the first replay
            // names the uuid and the parts those changes carried are known (`sentParts`), only
            // those parts and the person's newer ones, over the replay's others (§6.6). All stay
            // unresolved until then, so the replay at the next welcome does not undo them.
            foreach (var kv in unresolved)
            {
                var carried = SentPartsOf(kv.Key);
                if (carried != null) sentParts[kv.Key] = new Dictionary<string, HashSet<string>> { { LostRequest, carried } };
                else sentParts.Remove(kv.Key);
                kv.Value.Clear();
                kv.Value.Add(LostRequest);
                if (!unacked.Contains(kv.Key)) { resendFull.Add(kv.Key); dirty.Add(kv.Key); }
            }
            editedWhileFullSent.Clear(); // their full state goes again anyway (`resendFull`)
            // Deletes not acknowledged: sent again (what was synced is kept until the ack).
            foreach (var l in pendingTombstones.Values) foreach (var u in l) dirty.Add(u);
            pendingTombstones.Clear();
            tombstoning.Clear();
            adoptWait = null; // the fresh uuids wait for the next connection's replay
            replayWait = null; // and so does registration (`registerAfterReplay`)
            pendingChange.Clear();
            pendingRegister.Clear();
            registering.Clear();
            awaitingResult.Clear();
            waitingForAcks.Clear();
            current = null;
            // Nothing is sent on the next connection before its welcome and register: local work
            // then goes out after the replay (base_seq at the replay's seq).
            initialRegisterDone = false;
            userActive = false;
            Emit("disconnected", new Dictionary<string, object> { { "reason", reason } });
        }

        void RegisterAll()
        {
            var all = scene.CaptureAll();
            var items = new List<ObjectState>();
            foreach (var st in all) if (!adoptable.Contains(st.Uuid)) items.Add(st);
            if (items.Count == 0)
            {
                initialRegisterDone = true;
                Emit("registered", RegisterSummary(0));
                return;
            }
            for (int i = 0; i < items.Count; i += MaxRegisterItems)
                SendRegister(items.GetRange(i, Math.Min(MaxRegisterItems, items.Count - i)));
        }

        void SendRegister(List<ObjectState> states)
        {
            var items = new List<object>();
            var uuids = new List<string>();
            foreach (var s in states)
            {
                items.Add(Msg.RegisterItem(s.Uuid, s.Kind, Msg.TruncateUtf8(s.Name, 1024), Msg.TruncateUtf8(scene.EditorRef(s.Uuid) ?? s.Name, 1024)));
                uuids.Add(s.Uuid);
                // First seen now (not in the scene as loaded): its base is the state it is registered with.
                if (!synced.ContainsKey(s.Uuid) && !editedBeforeBase.Contains(s.Uuid) && !reconnectBase.ContainsKey(s.Uuid)) reconnectBase[s.Uuid] = s;
            }
            string rid = NextRequestId("r");
            if (client.Send(Msg.Register(rid, items))) { pendingRegister[rid] = uuids; foreach (var u in uuids) registering.Add(u); }
            else Fail("could not queue `register` for " + items.Count + " objects (not connected or queue full); will retry on reconnect");
        }

        Dictionary<string, object> RegisterSummary(long seq)
        {
            return new Dictionary<string, object>
            {
                { "count", (long)(registerStats_registered + registerStats_updated + registerStats_unchanged + registerStats_collision + registerStats_error) },
                { "registered", (long)registerStats_registered }, { "updated", (long)registerStats_updated },
                { "unchanged", (long)registerStats_unchanged }, { "collisions", (long)registerStats_collision },
                { "errors", (long)registerStats_error }, { "seq", seq },
            };
        }

        void OnFrame(Frame f)
        {
            var m = f.Message;
            switch (f.Type)
            {
                case MessageType.Ack: OnAck(m); break;
                case MessageType.BatchBegin: OnBatchBegin(m); break;
                case MessageType.Apply: OnApply(m, f.Attachment); break;
                case MessageType.BatchEnd: OnBatchEnd(m); break;
                case MessageType.BatchResult: OnBatchResult(m); break;
                case MessageType.SafeMode:
                    SafeMode = Msg.Bool(m, "active");
                    heldReported = null; // the daemon forgot any list
                    SafeModeReason = SafeMode ? (Msg.OptStr(m, "reason") ?? "") : null;
                    Emit("safe_mode", new Dictionary<string, object> { { "active", SafeMode }, { "reason", SafeModeReason } });
                    break;
                case MessageType.Error: OnError(m); break;
                case MessageType.Peers: OnPeers(m); break;
                case MessageType.Conflict: OnConflict(m); break;
                case MessageType.QuarantineReleased: OnQuarantineReleased(m); break;
                case MessageType.Live: OnLive(m); break;
                case MessageType.Pong:
                    Emit("pong", new Dictionary<string, object> { { "request_id", Msg.OptStr(m, "request_id") }, { "seq", Msg.OptLong(m, "seq", 0) } });
                    break;
                case MessageType.Status:
                    Emit("status", new Dictionary<string, object> { { "status", m } });
                    break;
                default:
                    // PROTOCOL §8: readers ignore what they do not know; still tell the user.
                    Emit("ignored", new Dictionary<string, object> { { "type", f.Type } });
                    break;
            }
        }

        void OnError(Dictionary<string, object> m)
        {
            string code = Msg.OptStr(m, "code") ?? "?";
            string message = Msg.OptStr(m, "message") ?? "";
            string rid = Msg.OptStr(m, "request_id");
            if (code == ErrorCode.SafeMode)
            {
                SafeMode = true;
                SafeModeReason = message;
            }
            List<KeyValuePair<string, ObjectState>> sent;
            if (rid != null && pendingChange.TryGetValue(rid, out sent))
            {
                pendingChange.Remove(rid);
                MeshesAnswered(rid, false);
                // Refused as a whole: nothing of it is pending any more (a temporary refusal puts the
                // uuids back into the dirty set, which is local work again). Retry later only when
                // the refusal is temporary.
                foreach (var kv in sent) ResolveRequest(kv.Key, rid);
                if (code == ErrorCode.SafeMode || RetryLater(code))
                    foreach (var kv in sent) { if (kv.Value == null) synced.Remove(kv.Key); else synced[kv.Key] = kv.Value; dirty.Add(kv.Key); }
                if (code == ErrorCode.SafeMode)
                    // Read-only until a person clears it (§6.7): kept here, marked not synced with the
                    // daemon's message, and sent in full once safe mode ends (the Blender addon's
                    // `engine.SAFE_MODE`).
                    foreach (var kv in sent)
                        if (scene.Holds(kv.Key)) { notSynced[kv.Key] = code + ": " + message; resendFull.Add(kv.Key); }
                if (RetryLater(code))
                {
                    // Not run: it goes again after a pause that doubles while refusals continue
                    // (PROTOCOL §2 "Rate limits"), instead of at the next tick.
                    retryLaterPause = nextRetryLaterPause;
                    nextRetryLaterPause = TimeSpan.FromTicks(Math.Min(nextRetryLaterPause.Ticks * 2, RetryLaterPauseMax.Ticks));
                    retryLaterClock.Restart();
                }
                DrainWaiting();
            }
            List<string> notGone;
            if (rid != null && pendingTombstones.TryGetValue(rid, out notGone))
            {
                // Refused as a whole: the deletes are sent again with the next capture.
                pendingTombstones.Remove(rid);
                foreach (var u in notGone) { tombstoning.Remove(u); dirty.Add(u); }
            }
            if (rid != null && pendingRegister.ContainsKey(rid))
            {
                foreach (var u in pendingRegister[rid]) registering.Remove(u);
                pendingRegister.Remove(rid);
                if (pendingRegister.Count == 0 && !initialRegisterDone) { initialRegisterDone = true; Emit("registered", RegisterSummary(0)); }
            }
            LastError = code + ": " + message;
            LastErrorCode = code;
            LastErrorMessage = message;
            Emit("daemon_error", new Dictionary<string, object> { { "code", code }, { "message", message }, { "request_id", rid } });
        }

        void OnAck(Dictionary<string, object> m)
        {
            string rid = Msg.OptStr(m, "request_id");
            if (rid != null && pendingChange.ContainsKey(rid)) nextRetryLaterPause = RetryLaterPauseMin;
            long seq = Msg.OptLong(m, "seq", 0);
            var results = Msg.Arr(m, "results");
            List<string> regUuids;
            if (rid != null && pendingRegister.TryGetValue(rid, out regUuids))
            {
                pendingRegister.Remove(rid);
                foreach (var u in regUuids) registering.Remove(u);
                OnRegisterAck(regUuids, results, seq);
                if (pendingRegister.Count == 0 && !initialRegisterDone)
                {
                    initialRegisterDone = true;
                    Emit("registered", RegisterSummary(seq));
                }
                return;
            }
            List<string> gone;
            if (rid != null && pendingTombstones.TryGetValue(rid, out gone))
            {
                pendingTombstones.Remove(rid);
                OnTombstoneAck(gone, results);
                return;
            }
            List<KeyValuePair<string, ObjectState>> sent;
            if (rid != null && pendingChange.TryGetValue(rid, out sent))
            {
                pendingChange.Remove(rid);
                OnChangeAck(rid, seq, results, sent);
                DrainWaiting();
                return;
            }
            Emit("ack", new Dictionary<string, object> { { "request_id", rid }, { "seq", seq }, { "results", results } });
        }

        /// <summary>
        /// One result per uuid of a `tombstone` (§5): `tombstoned`, or `NOT_FOUND` (already gone):
        /// the uuid is no longer tracked. Another refusal keeps it not synced, retried like a
        /// kept edit (§6.8).
        /// </summary>
        void OnTombstoneAck(List<string> uuids, List<object> results)
        {
            for (int i = 0; i < uuids.Count; i++)
            {
                string u = uuids[i];
                tombstoning.Remove(u);
                var r = results != null && i < results.Count ? results[i] as Dictionary<string, object> : null;
                string status = r == null ? null : Msg.OptStr(r, "status");
                string code = r == null ? null : Msg.OptStr(r, "error_code");
                if (status == ItemStatus.Tombstoned || code == ErrorCode.NotFound)
                {
                    synced.Remove(u);
                    reconnectBase.Remove(u);
                    editedBeforeBase.Remove(u);
                    appliedHash.Remove(u);
                    resendFull.Remove(u);
                    notSynced.Remove(u);
                    Resolved(u);
                    continue;
                }
                string why = (code ?? "error") + ": " + (r == null ? "no result" : Msg.OptStr(r, "message"));
                notSynced[u] = "delete not synced: " + why;
                Fail("delete of " + u + " refused: " + why, null, code);
            }
            var ul = new List<object>();
            foreach (var u in uuids) ul.Add(u);
            Emit("tombstone_ack", new Dictionary<string, object> { { "uuids", ul } });
        }

        /// <summary>A person's deletes, as one `tombstone` request (§5, §6.2: the delete is the
        /// later writer and wins over another editor's change still on its way).</summary>
        void SendTombstone(List<string> uuids)
        {
            if (uuids.Count == 0 || !client.IsConnected) return;
            string rid = NextRequestId("t");
            if (!client.Send(Msg.Tombstone(rid, uuids))) { foreach (var u in uuids) dirty.Add(u); return; }
            pendingTombstones[rid] = uuids;
            tombstoning.UnionWith(uuids);
            MarkUserActive();
        }

        /// <summary>One result per change (§6.1): `queued`, or `error` with a per-item code.</summary>
        void OnChangeAck(string rid, long seq, List<object> results, List<KeyValuePair<string, ObjectState>> sent)
        {
            var recreate = new List<string>();
            var now = DateTime.UtcNow;
            var pending = new HashSet<string>(); // uuids with at least one op of this message queued
            for (int i = 0; i < results.Count; i++)
            {
                var r = results[i] as Dictionary<string, object>;
                string status = r == null ? null : Msg.OptStr(r, "status");
                string uuid = r == null ? null : Msg.OptStr(r, "uuid");
                if (uuid != null && (status == ItemStatus.Queued || status == ItemStatus.Held)) pending.Add(uuid);
            }
            // A refused change is resolved: nothing of it will be forwarded (§6.6).
            foreach (var kv in sent) if (!pending.Contains(kv.Key)) ResolveRequest(kv.Key, rid);
            Dictionary<string, string> named;
            namedMeshes.TryGetValue(rid, out named);
            MeshesAnswered(rid, pending.Count > 0); // a frame with a mesh holds one change
            for (int i = 0; i < results.Count; i++)
            {
                var r = results[i] as Dictionary<string, object>;
                if (r == null) continue;
                string status = Msg.OptStr(r, "status");
                string uuid = Msg.OptStr(r, "uuid");
                if (status == ItemStatus.Queued || status == ItemStatus.Held)
                {
                    if (uuid != null) awaitingResult[uuid] = now;
                    continue;
                }
                if (status != ItemStatus.Error) continue;
                ChangeErrors++;
                string code = Msg.OptStr(r, "error_code");
                string message = Msg.OptStr(r, "message");
                if (code == ErrorCode.NotFound)
                {
                    // The daemon has no synced state for it (e.g. registered by an earlier run whose
                    // `create` never made it): send the full state.
                    if (uuid != null && !recreate.Contains(uuid)) recreate.Add(uuid);
                    Emit("change_refused", new Dictionary<string, object> { { "uuid", uuid }, { "error_code", code }, { "message", message }, { "action", "create" } });
                }
                else if (code == ErrorCode.Stale)
                {
                    // Another editor changed it since our base_seq; the daemon sends its state as a
                    // `resync` batch, which replaces this edit (the other editor's change wins). An
                    // edit kept here as not synced that was sent again lost too: the resync is
                    // applied over it (a conflict, shown in both editors), never spared as kept work.
                    // A change sent before the kept result came (`editedAgain`) carried no kept
                    // edit: its refusal ends no mark, and the kept edit goes again in full once
                    // nothing sent before the mark is on its way (§6.4), as after its commit or
                    // drop. Unmarked, the resync that came first had been skipped as kept work and
                    // the full state it made due was cancelled: Unity held the kept rename alone.
                    if (uuid != null && editedAgain.Contains(uuid)) KeptEditAgainOnceEnded(uuid);
                    else if (uuid != null && notSynced.Remove(uuid)) resendFull.Remove(uuid);
                    Emit("change_refused", new Dictionary<string, object> { { "uuid", uuid }, { "error_code", code }, { "message", message }, { "action", "await_resync" } });
                }
                else if (code == ErrorCode.InvalidField && uuid != null && named != null && named.ContainsKey(uuid))
                {
                    // Named without its geometry, which the daemon no longer holds (it removes
                    // meshes nothing references): sent again in full, with it. Sent with it, a
                    // refusal is a real one (the branch below).
                    daemonMeshes.Remove(named[uuid]);
                    if (!recreate.Contains(uuid)) recreate.Add(uuid);
                }
                else
                {
                    if (KeptWhenRefused(code) && uuid != null && scene.Holds(uuid))
                    {
                        // Refused by governance, or not takeable as it is (a reparent that would close a
                        // parent cycle, a value out of range, a mesh over the limit): the person's edit
                        // stays here, marked not synced, and is re-sent in full on the next edit, a peer
                        // joining or a quarantine release (§6.1, §6.4).
                        notSynced[uuid] = code + ": " + message;
                        if (code == ErrorCode.InvalidField) refusedInvalid.Add(uuid);
                        Emit("not_synced", new Dictionary<string, object> { { "uuids", new List<object> { uuid } }, { "reason", notSynced[uuid] }, { "error_code", code } });
                    }
                    Fail("change refused for " + uuid + ": " + message, rid, code);
                }
            }
            Emit("change_ack", new Dictionary<string, object> { { "request_id", rid }, { "seq", seq }, { "results", results } });
            if (recreate.Count == 0) return;
            var ops = new List<Dictionary<string, object>>();
            var opUuids = new List<string>();
            foreach (var u in recreate)
            {
                var st = scene.Capture(u);
                if (st == null) continue; // deleted here meanwhile: nothing to create
                ops.Add(st.ToCreateOp(unitScale));
                opUuids.Add(u);
            }
            if (ops.Count > 0) SendChanges(ops, opUuids);
        }

        void OnBatchResult(Dictionary<string, object> m)
        {
            string id = Msg.Str(m, "batch_id");
            long seq = Msg.Long(m, "seq");
            string outcome = Msg.Str(m, "outcome");
            string code = Msg.OptStr(m, "error_code");
            var uuids = new List<object>();
            object u;
            if (m.TryGetValue("uuids", out u) && u is List<object>) uuids = (List<object>)u;
            // The uuids whose change of this editor the result ends: of a batch also received as a
            // participant, only those it carried of this editor's work (acknowledged before its fences).
            if (loopWaitingFrom.Count > 0)
            {
                // A parent a reparent of this batch left waiting for a loop here: committed, the
                // daemon holds it; rolled back, it does not (§6.4).
                foreach (var w in new List<KeyValuePair<string, string>>(loopWaitingFrom))
                {
                    if (w.Value != id) continue;
                    loopWaitingFrom.Remove(w.Key);
                    if (outcome == BatchOutcome.RolledBack) loopWaiting.Remove(w.Key);
                }
            }
            var ends = uuids;
            // On a VERIFY_MISMATCH rollback: the uuids that caused it (PROTOCOL §6.4).
            HashSet<string> mismatched = null;
            object mm;
            if (m.TryGetValue("mismatched", out mm) && mm is List<object>)
            {
                mismatched = new HashSet<string>(StringComparer.Ordinal);
                foreach (var x in (List<object>)mm) if (x is string) mismatched.Add((string)x);
            }
            // uuid → the last of this editor's requests the result ends (PROTOCOL §6.4).
            Dictionary<string, string> through = null;
            object t;
            if (m.TryGetValue("through", out t) && t is Dictionary<string, object>)
            {
                through = new Dictionary<string, string>(StringComparer.Ordinal);
                foreach (var kv in (Dictionary<string, object>)t) if (kv.Value is string) through[kv.Key] = (string)kv.Value;
            }
            HashSet<string> covered;
            if (receivedBatches.TryGetValue(id, out covered))
            {
                ends = new List<object>();
                foreach (var x in uuids) if (x is string && covered.Contains((string)x)) ends.Add(x);
            }
            var all = ends;
            if (through != null)
            {
                // With `through` (always sent by this daemon), only the uuids it names are this
                // editor's: a change waiting at the daemon for a later batch (bounded batches,
                // §6.2) is not ended by this one.
                ends = new List<object>();
                foreach (var x in all) if (x is string && through.ContainsKey((string)x)) ends.Add(x);
            }
            bool keptLocal = outcome == BatchOutcome.RolledBack && Msg.OptBool(m, "kept_local", false);
            foreach (var x in ends)
            {
                var s = x as string;
                if (s == null) continue;
                if (keptLocal)
                {
                    // What its changes carried stays the person's while it is kept (`KeptParts`).
                    var carried = SentPartsOf(s);
                    if (carried != null)
                    {
                        HashSet<string> k;
                        if (!keptParts.TryGetValue(s, out k)) keptParts[s] = k = new HashSet<string>(StringComparer.Ordinal);
                        foreach (var op in carried) if (op != Ops.Create && op != Ops.Delete && op != Ops.Reparent) k.Add(op);
                    }
                }
                awaitingResult.Remove(s);
                // Resolved, whatever the outcome (§6.6) — but only the changes the daemon has
                // acknowledged: a newer change of the uuid still waiting for its ack cannot be in
                // this batch, and stays unresolved so no replay undoes it. With `through` (§6.4),
                // only this editor's changes of the uuid up to the request it names.
                HashSet<string> reqs;
                if (unresolved.TryGetValue(s, out reqs))
                {
                    string last;
                    if (through != null && through.TryGetValue(s, out last))
                    {
                        long upto = RequestNumber(last);
                        reqs.RemoveWhere(r => r == LostRequest || (RequestNumber(r) >= 0 && RequestNumber(r) <= upto && !pendingChange.ContainsKey(r)));
                    }
                    else reqs.RemoveWhere(r => !pendingChange.ContainsKey(r));
                    if (reqs.Count == 0) Resolved(s); else ForgetEndedParts(s);
                }
            }
            BatchResults++;
            string reason = Msg.OptStr(m, "reason");
            if (keptLocal)
                foreach (var x in ends)
                {
                    if (!(x is string)) continue;
                    notSynced[(string)x] = reason ?? ("not synced: " + (code ?? "rolled back"));
                    if (InFlight((string)x)) editedAgain.Add((string)x);
                }
            if (outcome == BatchOutcome.Dropped)
                // This editor's change lost a conflict at the daemon (§6.2): the correction that
                // follows replaces it, also over an edit kept here as not synced and sent again.
                // A change sent before the kept result came (`editedAgain`) carried no kept edit:
                // its loss ends no mark, and the kept edit goes again in full below, as after its
                // commit. Unmarked, the kept rename waited for a correction the daemon never
                // sends over kept work, and the editors stayed apart with nothing marked (random
                // edits, seed 2).
                foreach (var x in ends)
                    if (x is string && !editedAgain.Contains((string)x) && notSynced.Remove((string)x)) resendFull.Remove((string)x);
            foreach (var x in all)
            {
                var s = x as string;
                if (s == null) continue;
                // (A change sent before the mark of a uuid edited again carries no kept edit.)
                if (!keptLocal && outcome == BatchOutcome.Committed && !editedAgain.Contains(s)) notSynced.Remove(s);
                if (outcome == BatchOutcome.Committed || outcome == BatchOutcome.Dropped) confirmed.Add(s);
                long had;
                if (outcome == BatchOutcome.Committed && (!committedSeq.TryGetValue(s, out had) || had < seq)) committedSeq[s] = seq;
            }
            foreach (var x in ends)
            {
                var s = x as string;
                if (s == null) continue;
                var pauses = !keptLocal ? null
                    : code == ErrorCode.VerifyTimeout ? TimeoutRetry
                    : code == ErrorCode.VerifyMismatch && mismatched != null && !mismatched.Contains(s) ? CollateralRetry
                    : null;
                if (pauses != null)
                {
                    // A participant too slow to answer, or another uuid of the batch that
                    // mismatched, says nothing against the edit: it goes again by itself after a
                    // pause, three such rollbacks in a row at most (§6.4).
                    int n;
                    retriesInARow.TryGetValue(s, out n);
                    if (n < pauses.Length) { retriesInARow[s] = n + 1; retryAt[s] = clock.Elapsed + pauses[n]; }
                }
                else if (outcome == BatchOutcome.Committed) { retriesInARow.Remove(s); retryAt.Remove(s); }
                // An edit made while its full state was on its way goes in full only if that did
                // not commit (`MarkDirty`).
                if (editedWhileFullSent.Remove(s) && keptLocal && !InFlight(s)) resendFull.Add(s);
                KeptEditAgainOnceEnded(s);
            }
            if (keptLocal)
            {
                Emit("not_synced", new Dictionary<string, object> { { "uuids", ends }, { "reason", reason }, { "error_code", code } });
                int again = 0;
                foreach (var x in ends)
                {
                    var s = x as string;
                    long at;
                    if (s == null || !sentAtJoins.TryGetValue(s, out at) || at >= peerJoins) continue;
                    resendFull.Add(s);
                    dirty.Add(s);
                    again++;
                }
                if (again > 0)
                    Emit("retry_not_synced", new Dictionary<string, object> { { "count", (long)again }, { "why", "a peer joined after it was sent" } });
            }
            if (outcome == BatchOutcome.Committed && ends.Count > 0)
                ParentsChanged("a change of this editor committed: the parents it was refused for may differ now");
            else if (outcome == BatchOutcome.Committed && structuralBatches.Contains(id))
                ParentsChanged("a batch that changed the parents it was refused for committed");
            structuralBatches.Remove(id);
            // A batch still waiting here to be applied (behind a replay that waits for acks): what
            // it overwrites is read once it is (the daemon ended it at another editor's answer).
            bool waiting = false;
            foreach (var w in waitingForAcks) waiting |= w.BatchId == id;
            if (waiting) earlyResults[id] = new KeyValuePair<string, Dictionary<string, string>>(outcome, through);
            else OvertookEnded(id, outcome, through);
            if (outcome == BatchOutcome.Committed) BatchesCommitted++;
            else if (outcome == BatchOutcome.RolledBack) BatchesRolledBack++;
            // While paused the held batches are not applied: LastSeq must stay where the resync
            // after the pause has to start.
            if (!Paused && seq > LastSeq) LastSeq = seq;
            // On rolled_back the daemon sends the authoritative state as a `resync` batch right after
            // this result: our change is resolved now, so that batch is applied like any other, even
            // when it undoes our own change (unless it was edited again meanwhile, §6.6).
            Emit("batch_result", new Dictionary<string, object>
            {
                { "batch_id", id }, { "seq", seq }, { "outcome", outcome }, { "uuids", uuids }, { "error_code", code }, { "last_seq", LastSeq },
                { "kept_local", keptLocal && ends.Count > 0 },
            });
        }

        /// <summary>A batch's result, once the batch is applied here: what its full states overwrote
        /// of kept objects is put back if it rolled back, synced if it committed (§6.4). Not those
        /// whose change of this editor the result ends (`through`): what it keeps is its own.</summary>
        void OvertookEnded(string id, string outcome, Dictionary<string, string> through)
        {
            Dictionary<string, Overtaken> over;
            if (!overtook.TryGetValue(id, out over)) return;
            overtook.Remove(id);
            if (through != null) foreach (var x in through.Keys) over.Remove(x);
            if (outcome == BatchOutcome.RolledBack) UndoOvertaken(id, over);
            else if (outcome == BatchOutcome.Committed) OvertakenSynced(over);
        }

        /// <summary>Another editor's full state of objects kept here not synced rolled back: what it
        /// overwrote of the person's work is put back (PROTOCOL §6.4 "A person's edit is never
        /// undone"). The rollback's correction cannot: those objects were never committed, so it is
        /// a `delete`, which a kept object skips. A part the person changed again since the batch
        /// stays as the person left it. Nothing is sent for it: the object is as before the batch,
        /// still not synced (the Blender addon's `_undo_overtaken`).</summary>
        void UndoOvertaken(string batchId, Dictionary<string, Overtaken> over)
        {
            foreach (var kv in over)
            {
                string u = kv.Key;
                var o = kv.Value;
                if (!notSynced.ContainsKey(u)) continue; // synced since: what stands is the daemon's
                var now = scene.Capture(u);
                if (now == null) continue;
                var touched = new HashSet<string>(StringComparer.Ordinal);
                foreach (var op in StateDiff.Diff(o.Theirs, now, StateHash.Epsilon, unitScale)) touched.Add((string)op["op"]);
                var back = new IncomingBatch { BatchId = batchId, Seq = LastSeq, Path = BatchPath.Slow };
                var names = new List<string>();
                foreach (var op in StateDiff.Diff(now, o.Before, StateHash.Epsilon, unitScale))
                {
                    var name = (string)op["op"];
                    if (touched.Contains(name) || (name == Ops.Mesh && o.Mesh == null)) continue;
                    back.Changes.Add(RemoteChange.Parse(op, name == Ops.Mesh ? o.Mesh : null, unitScale, "change"));
                    names.Add(name);
                }
                if (back.Changes.Count == 0) continue;
                back.Count = back.Changes.Count;
                try
                {
                    scene.ApplyBatch(back);
                }
                catch (Exception)
                {
                    // Part by part (the scene undid the whole batch): one part that cannot be put
                    // back (its parent gone, say) stays as the batch wrote it, the others come back.
                    var putBack = new List<string>();
                    for (int i = 0; i < back.Changes.Count; i++)
                    {
                        var one = new IncomingBatch { BatchId = batchId, Seq = LastSeq, Path = BatchPath.Slow, Count = 1 };
                        one.Changes.Add(back.Changes[i]);
                        try { scene.ApplyBatch(one); putBack.Add(names[i]); }
                        catch (Exception e) { Fail("putting the " + names[i] + " of " + u + " back after batch " + batchId + " rolled back failed: " + e.Message); }
                    }
                    names = putBack;
                    if (names.Count == 0) continue;
                }
                if (o.LastSent == null) synced.Remove(u); else synced[u] = o.LastSent;
                appliedHash.Remove(u);
                Emit("overtaken_undone", new Dictionary<string, object> { { "batch_id", batchId }, { "uuid", u }, { "ops", string.Join(",", names) } });
            }
        }

        /// <summary>Another editor's full state of objects kept here not synced committed: where this
        /// editor holds it as the batch wrote it, the object is synced (the daemon holds what it
        /// holds and no longer counts it kept here, §6.4); one the person changed since stays not
        /// synced, and that change goes in full as usual.</summary>
        void OvertakenSynced(Dictionary<string, Overtaken> over)
        {
            foreach (var kv in over)
            {
                if (!notSynced.ContainsKey(kv.Key) || InFlight(kv.Key)) continue;
                var now = scene.Capture(kv.Key);
                if (now == null || StateDiff.Diff(kv.Value.Theirs, now, StateHash.Epsilon, unitScale).Count > 0) continue;
                notSynced.Remove(kv.Key);
                resendFull.Remove(kv.Key);
                keptParts.Remove(kv.Key);
            }
        }

        /// <summary>What a batch's `create` of an object kept here not synced is about to overwrite
        /// (another editor's full state of it: applied whole where the person's kept edit names no
        /// part — a kept create, nothing of it ever committed, §6.4), by uuid.</summary>
        Dictionary<string, Overtaken> Overtaking(IncomingBatch b)
        {
            Dictionary<string, Overtaken> over = null;
            if (notSynced.Count == 0) return null;
            foreach (var c in b.Changes)
            {
                if (c.Op != Ops.Create || !notSynced.ContainsKey(c.Uuid) || (over != null && over.ContainsKey(c.Uuid))) continue;
                // Its own change is on its way (its full state sent again, say): the batch answers
                // that, and a rollback keeps it here (`kept_local`) as the daemon reads what this
                // editor was sent — put back, it held values the daemon did not know of, and their
                // re-sends never settled (random edits, seed 233).
                if (InFlight(c.Uuid)) continue;
                var before = scene.Capture(c.Uuid);
                if (before == null) continue;
                ObjectState last;
                synced.TryGetValue(c.Uuid, out last);
                if (over == null) over = new Dictionary<string, Overtaken>(StringComparer.Ordinal);
                over[c.Uuid] = new Overtaken
                {
                    Before = before,
                    LastSent = last,
                    Mesh = before.MeshHash != null && before.MeshHash != c.MeshHash ? scene.MeshAttachment(c.Uuid) : null,
                    Theirs = StateDiff.Apply(null, c),
                    Seq = b.Seq,
                };
            }
            return over;
        }

        /// <summary>A kept uuid edited again before its kept result came (`editedAgain`): once its
        /// changes sent before the mark have all ended — committed, dropped or refused — the kept
        /// edit goes again in full, as after any edit of a kept uuid (PROTOCOL §6.4). Left to
        /// that commit, the mark ended with the kept edit never sent again (random edits, seed
        /// 87, in Blender).</summary>
        void KeptEditAgainOnceEnded(string uuid)
        {
            if (InFlight(uuid) || !editedAgain.Remove(uuid) || !notSynced.ContainsKey(uuid)) return;
            resendFull.Add(uuid);
            dirty.Add(uuid);
        }

        void OnRegisterAck(List<string> uuids, List<object> results, long seq)
        {
            var reregister = new List<ObjectState>();
            var creates = new List<Dictionary<string, object>>();
            var createdUuids = new List<string>();
            for (int i = 0; i < results.Count && i < uuids.Count; i++)
            {
                var r = results[i] as Dictionary<string, object>;
                if (r == null) continue;
                string status = Msg.OptStr(r, "status");
                string uuid = uuids[i];
                var state = scene.Capture(uuid);
                ObjectState baseState;
                if (reconnectBase.TryGetValue(uuid, out baseState)) reconnectBase.Remove(uuid);
                bool editedEarly = editedBeforeBase.Remove(uuid);
                switch (status)
                {
                    case ItemStatus.Registered:
                        registerStats_registered++;
                        if (state != null)
                        {
                            creates.Add(state.ToCreateOp(unitScale));
                            createdUuids.Add(uuid);
                            resendFull.Remove(uuid); // this create is the full state
                        }
                        break;
                    case ItemStatus.Updated:
                    case ItemStatus.Unchanged:
                        if (status == ItemStatus.Updated) registerStats_updated++; else registerStats_unchanged++;
                        // The daemon knows this object; replay via hello.last_seq brings any newer state.
                        // Its base is the state it was first seen in (the scene as loaded, else as
                        // registered): a person's edit since then is local work, its parts sent
                        // now, never taken for the synced state.
                        if (state != null && !synced.ContainsKey(uuid))
                        {
                            if (editedEarly)
                            {
                                // No base from before the edit: the whole object is the person's.
                                resendFull.Add(uuid);
                                dirty.Add(uuid);
                            }
                            else
                            {
                                synced[uuid] = baseState ?? state;
                                if (baseState != null && !StateDiff.NearlyEquals(baseState, state)) dirty.Add(uuid);
                            }
                        }
                        confirmed.Add(uuid);
                        break;
                    case ItemStatus.Collision:
                        registerStats_collision++;
                        string fresh = scene.ReassignUuid(uuid);
                        Remember(collisions, new CollisionInfo
                        {
                            Uuid = uuid, NewUuid = fresh, Kind = state != null ? state.Kind : null, Name = state != null ? state.Name : null,
                            Message = Msg.OptStr(r, "message"),
                        });
                        synced.Remove(uuid);
                        Emit("collision", new Dictionary<string, object> { { "uuid", uuid }, { "new_uuid", fresh }, { "message", Msg.OptStr(r, "message") } });
                        var st = fresh != null ? scene.Capture(fresh) : null;
                        if (st != null) reregister.Add(st);
                        break;
                    default:
                        registerStats_error++;
                        Fail("register refused for " + uuid + ": " + Msg.OptStr(r, "message"), null, Msg.OptStr(r, "error_code"));
                        break;
                }
            }
            if (creates.Count > 0) SendChanges(creates, createdUuids);
            if (reregister.Count > 0) SendRegister(reregister);
        }

        /// <summary>A change naming the uuid ended (refused as a whole or per item): no longer pending.</summary>
        void ResolveRequest(string uuid, string rid)
        {
            HashSet<string> reqs;
            if (!unresolved.TryGetValue(uuid, out reqs)) return;
            reqs.Remove(rid);
            if (reqs.Count == 0) Resolved(uuid); else ForgetEndedParts(uuid);
        }

        /// <summary>The ops of the person's changes of the uuid a rollback left kept here, while it
        /// is not synced and its full state is not on its way again (a batch answers that,
        /// §6.4); empty otherwise.</summary>
        HashSet<string> KeptParts(string uuid)
        {
            HashSet<string> k;
            if (!keptParts.TryGetValue(uuid, out k)) return NoParts;
            if (!notSynced.ContainsKey(uuid)) { keptParts.Remove(uuid); return NoParts; }
            var sent = InFlight(uuid) ? SentPartsOf(uuid) : null;
            return sent != null && sent.Contains(Ops.Create) ? NoParts : k;
        }

        static readonly HashSet<string> NoParts = new HashSet<string>(StringComparer.Ordinal);

        /// <summary>Another editor's plain op of a kept part, applied here, is its person's later
        /// edit (§6.4): that part holds the batch's value now, no longer the person's kept one, so
        /// a later full state of the other editor is no longer spared it. Still counted kept, the
        /// part was spared from the other person's newer full state and the value received was
        /// then sent as this person's, over theirs (random edits, seed 66, in Blender).</summary>
        void KeptPartsOvertaken(IncomingBatch toApply)
        {
            if (keptParts.Count == 0) return;
            foreach (var c in toApply.Changes)
            {
                HashSet<string> k;
                if (c.Op == Ops.Create || !keptParts.TryGetValue(c.Uuid, out k)) continue;
                k.Remove(c.Op);
                if (k.Count == 0) keptParts.Remove(c.Uuid);
            }
        }

        /// <summary>The parts of the uuid's ended requests are no longer on their way.</summary>
        void ForgetEndedParts(string uuid)
        {
            Dictionary<string, HashSet<string>> byRequest;
            HashSet<string> reqs;
            if (!sentParts.TryGetValue(uuid, out byRequest) || !unresolved.TryGetValue(uuid, out reqs)) return;
            foreach (var rid in new List<string>(byRequest.Keys)) if (!reqs.Contains(rid)) byRequest.Remove(rid);
        }

        /// <summary>The parts of the uuid's changes sent and not resolved (`create` / `delete`
        /// included); null when none is known.</summary>
        HashSet<string> SentPartsOf(string uuid)
        {
            Dictionary<string, HashSet<string>> byRequest;
            HashSet<string> reqs;
            if (!sentParts.TryGetValue(uuid, out byRequest) || !unresolved.TryGetValue(uuid, out reqs)) return null;
            HashSet<string> all = null;
            foreach (var kv in byRequest)
            {
                if (!reqs.Contains(kv.Key)) continue;
                if (all == null) all = new HashSet<string>(StringComparer.Ordinal);
                all.UnionWith(kv.Value);
            }
            return all;
        }

        /// <summary>Every change naming the uuid has ended: nothing of it is unresolved any more.</summary>
        void Resolved(string uuid)
        {
            unresolved.Remove(uuid);
            sentParts.Remove(uuid);
            slowInFlight.Remove(uuid);
            flightBase.Remove(uuid);
        }

        /// <summary>The send order of a `change` request id ("c" + counter); -1 for anything else.</summary>
        static long RequestNumber(string rid)
        {
            long n;
            return rid != null && rid.Length > 1 && rid[0] == 'c' && long.TryParse(rid.Substring(1), out n) ? n : -1;
        }

        /// <summary>
        /// The parts (§6.1) of the uuid's changes sent and not resolved, when they are all known
        /// and none is the object's existence (`create` / `delete`); null otherwise.
        /// </summary>
        HashSet<string> UnresolvedSentParts(string uuid)
        {
            var parts = SentPartsOf(uuid);
            if (parts == null || parts.Contains(Ops.Create) || parts.Contains(Ops.Delete)) return null;
            return parts;
        }

        /// <summary>
        /// A replay older than the last committed batch_result of the uuid this editor got: stale for
        /// it (§6.6), it would put back a state this editor's own committed change replaced.
        /// </summary>
        bool StaleReplay(string uuid, long replaySeq)
        {
            long committedAt;
            return committedSeq.TryGetValue(uuid, out committedAt) && replaySeq < committedAt;
        }

        /// <summary>A change of the uuid was sent on this connection and has not ended yet (§6.6).</summary>
        bool InFlight(string uuid)
        {
            HashSet<string> reqs;
            if (!unresolved.TryGetValue(uuid, out reqs)) return false;
            foreach (var r in reqs) if (r != LostRequest) return true;
            return false;
        }

        /// <summary>uuids whose change is in flight (sent, not ended by a batch_result or a refusal).</summary>
        public int InFlightCount { get { int n = 0; foreach (var u in unresolved.Keys) if (InFlight(u)) n++; return n; } }
        public bool IsInFlight(string uuid) { return InFlight(uuid); }

        /// <summary>Unresolved only because a change was sent on a connection that died, not re-sent yet.</summary>
        bool OnlyLost(string uuid)
        {
            HashSet<string> reqs;
            return unresolved.TryGetValue(uuid, out reqs) && reqs.Count == 1 && reqs.Contains(LostRequest);
        }

        void OnBatchBegin(Dictionary<string, object> m)
        {
            var b = new IncomingBatch
            {
                BatchId = Msg.Str(m, "batch_id"), Seq = Msg.Long(m, "seq"), Path = Msg.Str(m, "path"), Count = (int)Msg.Long(m, "count"),
                RequestId = Msg.OptStr(m, "request_id"),
            };
            if (current != null)
            {
                var open = current;
                open.Broken = "no batch_end before batch " + b.BatchId + " began";
                Fail("batch " + open.BatchId + " was not closed before batch " + b.BatchId + " began; not applying it");
                if (Paused) { if (client.IsConnected) client.Send(Msg.Applied(open.BatchId, open.Seq, null, true)); }
                else AnswerUnapplied(open);
            }
            if (b.Count < 0) b.Broken = "negative count";
            current = b;
            if (!receivedBatches.ContainsKey(b.BatchId))
            {
                var acked = new HashSet<string>();
                foreach (var kv in unresolved)
                    foreach (var rid in kv.Value)
                        if (rid != LostRequest && !pendingChange.ContainsKey(rid)) { acked.Add(kv.Key); break; }
                receivedBatches[b.BatchId] = acked;
                receivedOrder.Enqueue(b.BatchId);
                if (receivedOrder.Count > MaxReceivedBatches) receivedBatches.Remove(receivedOrder.Dequeue());
            }
        }

        void OnApply(Dictionary<string, object> m, byte[] attachment)
        {
            string id = Msg.Str(m, "batch_id");
            if (current == null || current.BatchId != id)
            {
                Fail("`apply` for batch " + id + " outside its batch_begin/batch_end fence; ignored");
                return;
            }
            if (current.Broken != null) return;
            try
            {
                var change = Msg.Obj(m, "change");
                var rc = RemoteChange.Parse(change, attachment, unitScale, "change");
                rc.Automation = Msg.OptBool(m, "automation", false);
                current.Changes.Add(rc);
                if (current.Changes.Count > current.Count) current.Broken = "more `apply` messages than batch_begin.count = " + current.Count;
            }
            catch (MessageFormatException e)
            {
                current.Broken = e.Message;
            }
        }

        void OnBatchEnd(Dictionary<string, object> m)
        {
            string id = Msg.Str(m, "batch_id");
            long seq = Msg.Long(m, "seq");
            if (current == null || current.BatchId != id)
            {
                Fail("`batch_end` for batch " + id + " without its batch_begin; ignored");
                return;
            }
            var b = current;
            current = null;
            if (b.Broken == null && seq != b.Seq) b.Broken = "batch_end.seq " + seq + " differs from batch_begin.seq " + b.Seq;
            if (b.Broken == null && b.Changes.Count != b.Count) b.Broken = "received " + b.Changes.Count + " `apply` messages, batch_begin.count = " + b.Count;
            // Batches are handled in arrival order: one waiting for acks holds the ones after it.
            if (waitingForAcks.Count > 0 || MustWaitForAcks(b))
            {
                waitingForAcks.Enqueue(b);
                return;
            }
            Complete(b);
        }

        /// <summary>
        /// A `resync` batch naming a uuid whose `change` this editor sent and the daemon has not
        /// acknowledged yet cannot be decided now: if the change was refused (e.g. STALE, whose
        /// resync the daemon sends before the ack) the resync must be applied, if it was queued the
        /// uuid is local work the resync must not undo (§6.6). The ack follows on the same
        /// connection, so the wait is short.
        /// </summary>
        bool MustWaitForAcks(IncomingBatch b)
        {
            if (Paused || b.Broken != null || b.Path != BatchPath.Resync || pendingChange.Count == 0) return false;
            var uuids = new HashSet<string>();
            foreach (var c in b.Changes) uuids.Add(c.Uuid);
            foreach (var list in pendingChange.Values)
                foreach (var kv in list)
                    if (uuids.Contains(kv.Key)) return true;
            return false;
        }

        /// <summary>Handles the batches that waited for acks, in order, as far as they can be decided.</summary>
        void DrainWaiting()
        {
            while (waitingForAcks.Count > 0)
            {
                if (MustWaitForAcks(waitingForAcks.Peek())) return;
                Complete(waitingForAcks.Dequeue());
            }
        }

        /// <summary>A complete batch: held (paused), answered unapplied (broken) or applied.</summary>
        void Complete(IncomingBatch b)
        {
            KeyValuePair<string, Dictionary<string, string>> early;
            if (earlyResults.TryGetValue(b.BatchId, out early)) earlyResults.Remove(b.BatchId);
            if (Paused)
            {
                // Play Mode: tell the daemon at once that this editor holds the batch, so it does not
                // wait 5 s and roll it back; a `resync` after the pause brings the state.
                BatchesHeld++;
                heldWhilePaused++;
                if (client.IsConnected) client.Send(Msg.Applied(b.BatchId, b.Seq, null, true));
                if (b.RequestId != null && b.RequestId == overtookProbe) overtookProbe = null; // asked again on resume
                Emit("held", new Dictionary<string, object> { { "batch_id", b.BatchId }, { "seq", b.Seq }, { "path", b.Path }, { "count", (long)b.Changes.Count } });
                return;
            }
            if (b.Broken != null)
            {
                Fail("batch " + b.BatchId + " (seq " + b.Seq + ") not applied: " + b.Broken);
                AnswerUnapplied(b);
                // The hashes we answered make the daemon roll a live batch back and resync us; a
                // broken resync batch is re-sent once. Ask again only for live batches, so a batch
                // that can never be read does not loop.
                if (b.Path != BatchPath.Resync) RequestResync();
                return;
            }
            if (overtookProbe != null && b.Path == BatchPath.Resync && b.RequestId == overtookProbe) SettleUnheardOvertaken(b);
            if (adoptable.Count > 0 && adoptWait != null && b.Path == BatchPath.Resync) Adopt(b);
            ApplyComplete(b);
            if (early.Key != null) OvertookEnded(b.BatchId, early.Key, early.Value); // its result came before it was applied
            if (firstReplayDue && b.Path == BatchPath.Resync)
            {
                firstReplayDue = false;
                away.UnionWith(dirty);
                away.UnionWith(resendFull);
                foreach (var c in b.Changes) replayed.Add(c.Uuid);
            }
            if (replayWait != null && b.Path == BatchPath.Resync) EndReplayWait(); // what it deleted is gone
            if (notSynced.Count > 0)
            {
                var arrived = new HashSet<string>();
                foreach (var c in b.Changes) if (c.Op == Ops.Create) arrived.Add(c.Uuid);
                foreach (var u in new List<string>(notSynced.Keys))
                {
                    var st = scene.Capture(u);
                    if (st != null && st.Parent != null && arrived.Contains(st.Parent)) { resendFull.Add(u); dirty.Add(u); }
                }
            }
        }

        /// <summary>A live preview (PROTOCOL §6.3): applied at once, outside any undo step, not answered.</summary>
        void OnLive(Dictionary<string, object> m)
        {
            RemoteChange c;
            try
            {
                c = RemoteChange.Parse(Msg.Obj(m, "change"), null, unitScale, "change");
            }
            catch (MessageFormatException e)
            {
                Fail("live frame not applied: " + e.Message);
                return;
            }
            if (c.Op != Ops.Transform && c.Op != Ops.Rename && c.Op != Ops.Visibility)
            {
                Fail("live frame not applied: op " + c.Op + " is not a fast-path op");
                return;
            }
            string reason = LiveRefusal(c.Uuid);
            if (reason == null)
            {
                try { scene.ApplyLive(c); }
                catch (Exception e) { reason = "failed: " + e.Message; }
            }
            if (reason != null)
            {
                LiveDropped++;
                Emit("live_dropped", new Dictionary<string, object> { { "uuid", c.Uuid }, { "op", c.Op }, { "reason", reason } });
                return;
            }
            // What we applied is what the daemon will hold: its change events are not ours (no echo).
            var st = scene.Capture(c.Uuid);
            if (st != null)
            {
                synced[c.Uuid] = st;
                appliedHash[c.Uuid] = st.Hash();
            }
            // A person's next change of it is made over this value: named in `seen` (§6.1).
            long mark = Msg.OptLong(m, "mark", 0);
            if (mark > 0) liveSeen[c.Uuid] = mark;
            LiveApplied++;
            Emit("live", new Dictionary<string, object> { { "uuid", c.Uuid }, { "op", c.Op }, { "origin", Msg.OptStr(m, "origin") } });
        }

        /// <summary>A per-item refusal after which the editor keeps its change as it is, marked not
        /// synced (§6.1): governance's (<c>BLOCKED</c>, <c>QUARANTINED</c>), and what the daemon cannot
        /// take as it is (<c>INVALID_FIELD</c>, e.g. a reparent that would close a parent cycle;
        /// <c>NON_FINITE</c>; <c>TOO_LARGE</c>). <c>STALE</c> ends it (the current state follows);
        /// <c>NOT_FOUND</c> is answered with the full state.</summary>
        public static bool KeptWhenRefused(string code)
        {
            return code == ErrorCode.Blocked || code == ErrorCode.Quarantined || code == ErrorCode.InvalidField
                || code == ErrorCode.NonFinite || code == ErrorCode.TooLarge;
        }

        /// <summary>Why a live preview of the uuid is not applied now, or null.</summary>
        string LiveRefusal(string uuid)
        {
            if (Paused) return "paused";
            if (current != null || waitingForAcks.Count > 0) return "batches waiting"; // older: never overtake them
            if (!synced.ContainsKey(uuid) || !scene.Holds(uuid)) return "not held here";
            if (notSynced.ContainsKey(uuid) || HasLocalWork(uuid)) return "local edit";
            foreach (var list in pendingChange.Values)
                foreach (var kv in list)
                    if (kv.Key == uuid) return "local edit";
            return null;
        }

        /// <summary>Two people changed one object in one window (PROTOCOL §6.2); the loser is corrected by a resync.</summary>
        void OnConflict(Dictionary<string, object> m)
        {
            var c = new ConflictInfo
            {
                Uuid = Msg.OptStr(m, "uuid"), Winner = Msg.OptStr(m, "winner"), Loser = Msg.OptStr(m, "loser"),
                Op = Msg.OptStr(m, "op"), Seq = Msg.OptLong(m, "seq", 0),
            };
            Remember(conflicts, c);
            Emit("conflict", new Dictionary<string, object>
            {
                { "uuid", c.Uuid }, { "winner", c.Winner }, { "loser", c.Loser }, { "op", c.Op }, { "seq", c.Seq },
            });
        }

        static void Remember<T>(List<T> list, T item)
        {
            if (list.Count == MaxRemembered) list.RemoveAt(0);
            list.Add(item);
        }

        void OnPeers(Dictionary<string, object> m)
        {
            var before = new HashSet<string>();
            foreach (var p in peers) before.Add(p.SessionId);
            peers.Clear();
            otherProjects.Clear();
            otherProjectsWithClients.Clear();
            object v;
            if (m.TryGetValue("peers", out v) && v is List<object>)
                foreach (var x in (List<object>)v)
                {
                    var d = x as Dictionary<string, object>;
                    if (d == null) continue;
                    peers.Add(new Peer { SessionId = Msg.OptStr(d, "session_id"), Client = Msg.OptStr(d, "client"), ClientId = Msg.OptStr(d, "client_id") });
                }
            if (m.TryGetValue("other_projects", out v) && v is List<object>)
                foreach (var x in (List<object>)v)
                {
                    var d = x as Dictionary<string, object>;
                    string pid = d == null ? null : Msg.OptStr(d, "project_id");
                    if (pid == null) continue;
                    otherProjects.Add(pid);
                    var op = new OtherProject { ProjectId = pid };
                    object cl;
                    if (d.TryGetValue("clients", out cl) && cl is List<object>)
                        foreach (var k in (List<object>)cl) if (k is string) op.Clients.Add((string)k);
                    otherProjectsWithClients.Add(op);
                }
            bool joined = false;
            foreach (var p in peers) if (!before.Contains(p.SessionId)) joined = true;
            Emit("peers", new Dictionary<string, object> { { "count", (long)peers.Count }, { "other_projects", (long)otherProjects.Count } });
            if (!joined) return;
            peerJoins++;
            RetryNotSynced("a peer joined");
        }

        /// <summary>
        /// Answers a batch that was not applied with the state this editor actually holds for its
        /// uuids, so verification fails now (→ ROLLBACK + resync) instead of after the timeout.
        /// </summary>
        void AnswerUnapplied(IncomingBatch b)
        {
            BatchesFailed++;
            var hashes = new SortedDictionary<string, string>(StringComparer.Ordinal);
            var failed = new SortedDictionary<string, string>(StringComparer.Ordinal);
            foreach (var c in b.Changes)
            {
                var st = scene.Capture(c.Uuid);
                if (st != null) hashes[c.Uuid] = st.Hash();
                failed[c.Uuid] = b.Broken;
            }
            SendApplied(b, hashes, failed, failed.Keys); // nothing of it applied
            Emit("apply_failed", new Dictionary<string, object> { { "batch_id", b.BatchId }, { "seq", b.Seq }, { "path", b.Path }, { "reason", b.Broken } });
        }

        void SendApplied(IncomingBatch b, SortedDictionary<string, string> hashes, IDictionary<string, string> failed, ICollection<string> spared)
        {
            var h = BeforeAppliedSent;
            if (h != null) h(b, hashes);
            if (client.IsConnected) client.Send(Msg.Applied(b.BatchId, b.Seq, hashes, false, failed, spared));
        }

        /// <summary>What a person's edit of the uuid is measured against: its last synced state,
        /// else, until the daemon answers its register, the state the engine first saw it in
        /// (`reconnectBase`: the scene as loaded after a reload or a reopen, §6.6); null when
        /// neither is known.</summary>
        ObjectState Base(string uuid)
        {
            ObjectState before;
            if (synced.TryGetValue(uuid, out before) && before != null) return before;
            return reconnectBase.TryGetValue(uuid, out before) ? before : null;
        }

        /// <summary>
        /// Local changes of the uuid not resolved yet (§6.6): sent with no `batch_result` naming it
        /// and not refused, to be re-sent in full, or dirty with a real difference from its base
        /// (`Base`), not merely marked dirty, nor our own apply coming back.
        /// </summary>
        bool HasLocalWork(string uuid)
        {
            if (unresolved.ContainsKey(uuid) || resendFull.Contains(uuid) || notSynced.ContainsKey(uuid) || tombstoning.Contains(uuid)) return true;
            if (!dirty.Contains(uuid)) return false;
            if (editedBeforeBase.Contains(uuid)) return true; // edited before any base was known
            var before = Base(uuid);
            if (before == null) return false; // never synced here: the daemon's state is applied
            var cur = scene.Capture(uuid);
            if (cur == null) return true; // deleted here, `delete` not sent yet
            string h;
            if (appliedHash.TryGetValue(uuid, out h) && h == cur.Hash()) return false;
            return StateDiff.Diff(before, cur, StateHash.Epsilon, unitScale).Count > 0;
        }

        /// <summary>
        /// A replayed `create` of a uuid kept for a person's edit (§6.6), cut to the changes that
        /// bring the parts the person did not change to the replay's state; null — keep the
        /// whole uuid and send it in full — when no base of it is known, the person deleted it,
        /// or an unresolved change's parts are not known (it carried the object's existence).
        /// The person's parts: what differs from its base (`Base`: the last synced state, or the
        /// scene as loaded before the register answer), plus the parts of changes sent and not
        /// resolved — in flight on this connection, or sent on a connection that died. A change
        /// never acknowledged counts as not sent (the last synced state went back to what it was
        /// before it); one acknowledged with no `batch_result` may or may not have been taken,
        /// so its parts stay the person's. Skipped whole while in flight, the replay's parent of
        /// the object was missing here, and a reparent the person then made under it closed a
        /// loop the daemon refused as one this editor knew of: held here, not anywhere else.
        /// </summary>
        List<RemoteChange> PartsNotChangedHere(RemoteChange c)
        {
            string u = c.Uuid;
            bool inFlight = InFlight(u);
            if (c.Op != Ops.Create || notSynced.ContainsKey(u) || (!dirty.Contains(u) && !inFlight)) return null;
            HashSet<string> lost = null;
            if (inFlight)
            {
                lost = UnresolvedSentParts(u);
                if (lost == null || resendFull.Contains(u)) return null;
            }
            else if (unresolved.ContainsKey(u))
            {
                lost = UnresolvedSentParts(u);
                if (lost == null && resendFull.Contains(u)) return null;
            }
            else if (resendFull.Contains(u)) return null;
            if (Base(u) == null) return null;
            var cur = scene.Capture(u);
            if (cur == null || cur.Kind != c.Kind) return null;
            var mine = PartsChangedHere(u);
            if (lost != null) mine.UnionWith(lost);
            if (mine.Count == 0) return null;
            var theirs = StateDiff.Apply(null, c);
            var outList = new List<RemoteChange>();
            foreach (var op in StateDiff.Diff(cur, theirs, StateHash.Epsilon, unitScale))
            {
                string name = (string)op["op"];
                if (mine.Contains(name)) continue;
                outList.Add(RemoteChange.Parse(op, name == Ops.Mesh ? c.Attachment : null, unitScale, "replay"));
            }
            return outList;
        }

        /// <summary>
        /// A forwarded `delete` that automation made (`apply.automation`) of an object a person
        /// here changed and the daemon has not taken yet (not captured, sent without a result,
        /// or kept not synced): not applied. The object stays with the person's edit; the answer
        /// is the state Unity holds, so the batch rolls back and automation's delete is undone
        /// everywhere (PROTOCOL.md §6.4: only automation's changes are rolled back everywhere),
        /// and the person's edit is sent as usual. A person's delete in the other editor is still
        /// applied (`ReportDeletedOver`). Fills <paramref name="kept"/> (uuid → what the person
        /// did) and takes those uuids out of <paramref name="mine"/>; returns the rest to apply.
        /// </summary>
        IncomingBatch KeepFromAutomationsDelete(IncomingBatch toApply, Dictionary<string, HashSet<string>> mine, Dictionary<string, string> kept)
        {
            // Only a delete that ends the batch's ops of its uuid: another editor's later change of
            // it in the same batch (its full state, say) brings the object back anyway.
            var lastOp = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var c in toApply.Changes) lastOp[c.Uuid] = c.Op;
            foreach (var c in toApply.Changes)
            {
                if (c.Op != Ops.Delete || !c.Automation || lastOp[c.Uuid] != Ops.Delete || kept.ContainsKey(c.Uuid)) continue;
                HashSet<string> parts;
                string what;
                if (mine.TryGetValue(c.Uuid, out parts)) what = string.Join(", ", new SortedSet<string>(parts, StringComparer.Ordinal));
                else if (unresolved.ContainsKey(c.Uuid)) what = "a change on its way";
                else if (notSynced.ContainsKey(c.Uuid)) what = "kept not synced";
                else continue;
                kept[c.Uuid] = what;
            }
            if (kept.Count == 0) return toApply;
            var rest = new IncomingBatch { BatchId = toApply.BatchId, Seq = toApply.Seq, Path = toApply.Path };
            foreach (var c in toApply.Changes) if (!kept.ContainsKey(c.Uuid)) rest.Changes.Add(c);
            rest.Count = rest.Changes.Count;
            foreach (var u in kept.Keys) mine.Remove(u);
            var kl = new List<object>();
            foreach (var u in kept.Keys) kl.Add(u);
            Emit("kept_from_automations_delete", new Dictionary<string, object> { { "batch_id", toApply.BatchId }, { "uuids", kl } });
            return rest;
        }

        /// <summary>
        /// A forwarded `delete` of an object the person changed here and has not sent: the
        /// delete is applied (an object's existence is not spared), and the person's change is
        /// still sent after the answer, from the base before the batch, so the daemon refuses it
        /// `STALE` — a conflict the delete won, in the WAL and in both editors (PROTOCOL.md
        /// §6.1). Without it the edit vanished with the object and nobody heard of it.
        /// </summary>
        void ReportDeletedOver(IncomingBatch b, Dictionary<string, HashSet<string>> mine)
        {
            foreach (var c in b.Changes)
            {
                if (c.Op != Ops.Delete || !mine.ContainsKey(c.Uuid) || lostOver.ContainsKey(c.Uuid)) continue;
                ObjectState before;
                var cur = scene.Capture(c.Uuid);
                if (cur == null || !synced.TryGetValue(c.Uuid, out before) || before == null) continue;
                var ops = new List<object>();
                foreach (var op in StateDiff.Diff(before, cur, StateHash.Epsilon, unitScale))
                {
                    string name = (string)op["op"];
                    if (name != Ops.Create && name != Ops.Delete && name != Ops.Mesh) ops.Add(op);
                }
                if (ops.Count > 0) lostOver[c.Uuid] = ops;
            }
        }

        /// <summary>
        /// Objects of a forwarded batch the person deleted here before it was applied (not
        /// captured yet, or their `tombstone` awaiting its ack): nothing of them is applied and
        /// the answer leaves them out, and their delete goes to the daemon now, before the
        /// answer, so the daemon has it when the answer arrives — the delete is the later writer
        /// and wins, a conflict, and the batch is no failed propagation (PROTOCOL.md §6.2, §6.4).
        /// Applied over the missing object, the whole batch failed and rolled back.
        /// </summary>
        IncomingBatch LeaveOutDeletedHere(IncomingBatch b)
        {
            var gone = new HashSet<string>(StringComparer.Ordinal);
            var send = new List<string>();
            foreach (var c in b.Changes)
            {
                if (c.Op == Ops.Create || gone.Contains(c.Uuid)) continue;
                ObjectState before;
                bool deletedHere = synced.TryGetValue(c.Uuid, out before) && before != null && !scene.Holds(c.Uuid);
                if (!deletedHere && !tombstoning.Contains(c.Uuid)) continue;
                gone.Add(c.Uuid);
                if (!tombstoning.Contains(c.Uuid)) send.Add(c.Uuid);
            }
            if (gone.Count == 0) return b;
            foreach (var u in send) dirty.Remove(u);
            SendTombstone(send);
            var rest = new IncomingBatch { BatchId = b.BatchId, Seq = b.Seq, Path = b.Path };
            foreach (var c in b.Changes) if (!gone.Contains(c.Uuid)) rest.Changes.Add(c);
            rest.Count = rest.Changes.Count;
            return rest;
        }

        static List<string> RepeatUuid(string uuid, int n)
        {
            var l = new List<string>(n);
            for (int i = 0; i < n; i++) l.Add(uuid);
            return l;
        }

        /// <summary>
        /// The ops (`change.op` names) of a person's edit of the uuid here not captured yet: what
        /// differs between the scene and its base (`Base`; never `create` / `delete`: the
        /// object's existence is not spared); every part when it was edited before any base was
        /// known. Empty for our own apply coming back, or for a uuid with no base here.
        /// </summary>
        HashSet<string> PartsChangedHere(string uuid)
        {
            var parts = new HashSet<string>(StringComparer.Ordinal);
            if (editedBeforeBase.Contains(uuid))
            {
                // Edited before any base was known: every part is the person's.
                foreach (var op in new[] { Ops.Transform, Ops.Rename, Ops.Visibility, Ops.Reparent, Ops.Mesh, Ops.Material }) parts.Add(op);
                return parts;
            }
            var before = Base(uuid);
            if (before == null) return parts;
            var cur = scene.Capture(uuid);
            string h;
            if (cur == null || (appliedHash.TryGetValue(uuid, out h) && h == cur.Hash())) return parts;
            foreach (var op in StateDiff.Diff(before, cur, StateHash.Epsilon, unitScale)) parts.Add((string)op["op"]);
            parts.Remove(Ops.Create);
            parts.Remove(Ops.Delete);
            return parts;
        }

        /// <summary>
        /// A batch's `reparent` that would make a parent loop here with a reparent a person made
        /// here and the daemon has not taken yet (sent without a result, or not captured yet): the
        /// other editor's, made before it heard of this one. It is not applied — the object stays
        /// where it is — and the answer is the state the batch made (<paramref name="spared"/>:
        /// uuid → that state), as for a part the person changed (PROTOCOL.md §6.4). The person's
        /// reparent, sent after, then loses to it as a conflict, and the daemon corrects this
        /// editor with every object on the cycle (§6.1). Applied, the loop was refused (or made),
        /// the batch rolled back, and each editor kept its own reparent, not synced, for good.
        /// The loop is read over the parents the batch's ops leave (`batchParents`): a kept
        /// reparent that the same batch's `create` of that object overwrites loops no more.
        /// </summary>
        IncomingBatch LeaveOutLoops(IncomingBatch b, IncomingBatch toApply, Dictionary<string, ObjectState> spared)
        {
            var batchParents = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var c in toApply.Changes)
            {
                if (c.Op == Ops.Reparent || c.Op == Ops.Create) batchParents[c.Uuid] = c.Parent;
                else if (c.Op == Ops.Delete) batchParents[c.Uuid] = null;
            }
            foreach (var c in toApply.Changes)
            {
                if (c.Op != Ops.Reparent || c.Parent == null) continue;
                string own = OwnReparentLooping(c.Uuid, c.Parent, batchParents);
                if (own == null) continue;
                spared[c.Uuid] = null;
                loopWaiting[c.Uuid] = c.Parent;
                loopWaitingFrom[c.Uuid] = b.BatchId;
                if (unresolved.ContainsKey(own))
                {
                    long before = Math.Min(LastSeq, b.Seq - 1), had;
                    flightBase[own] = flightBase.TryGetValue(own, out had) ? Math.Min(had, before) : before;
                    continue;
                }
                if (lostOver.ContainsKey(own) || keptLost.Contains(own)) continue;
                // Not captured yet: it goes after the answer from the seq before this batch,
                // made without it, so the daemon can tell it lost (§6.1), not refuse it as a
                // loop this editor knew of. (With a reshape in it, it waits to be captured.)
                if (KeptNotSent(own))
                {
                    // Kept, not synced: its whole state goes, as a kept edit is sent again (§6.8).
                    keptLost.Add(own);
                    dirty.Remove(own);
                    continue;
                }
                var ops = new List<object>();
                bool mesh = false;
                foreach (var op in StateDiff.Diff(Base(own), scene.Capture(own), StateHash.Epsilon, unitScale))
                {
                    mesh |= (string)op["op"] == Ops.Mesh;
                    ops.Add(op);
                }
                if (mesh || ops.Count == 0) continue;
                lostOver[own] = ops;
                dirty.Remove(own);
            }
            if (spared.Count == 0) return toApply;
            var rest = new IncomingBatch { BatchId = toApply.BatchId, Seq = toApply.Seq, Path = toApply.Path };
            foreach (var c in toApply.Changes)
                if (!(c.Op == Ops.Reparent && spared.ContainsKey(c.Uuid))) rest.Changes.Add(c);
            rest.Count = rest.Changes.Count;
            foreach (var u in new List<string>(spared.Keys))
            {
                ObjectState st = Base(u);
                foreach (var c in b.Changes) if (c.Uuid == u) st = StateDiff.Apply(st, c);
                spared[u] = st;
            }
            var ul = new List<object>();
            foreach (var u in spared.Keys) ul.Add(u);
            Emit("loop_spared", new Dictionary<string, object> { { "batch_id", b.BatchId }, { "uuids", ul } });
            return rest;
        }

        /// <summary>
        /// Objects a batch's reparent was left out of for a loop with a person's reparent here
        /// (LeaveOutLoops) go under the batch's parent once that is no loop here any more: the
        /// person's reparent lost, and its correction is applied (PROTOCOL.md §6.4). The daemon
        /// holds that parent, and the correction does not always name the object (two of the
        /// person's reparents made the loop: model seed 217). The batch's doing, not a person's
        /// edit: its base takes the parent, and nothing is sent. One the person reparented
        /// meanwhile, or that is gone, waits no more; one whose parent is not here still waits.
        /// </summary>
        void AttachLoopWaiting(long seq)
        {
            if (loopWaiting.Count == 0) return;
            var attach = new IncomingBatch { BatchId = "loop-waiting", Seq = seq, Path = BatchPath.Slow };
            foreach (var kv in new List<KeyValuePair<string, string>>(loopWaiting))
            {
                string u = kv.Key, p = kv.Value;
                var cur = scene.Capture(u);
                ObjectState based;
                if (cur == null || !synced.TryGetValue(u, out based) || based == null
                    || PartsChangedHere(u).Contains(Ops.Reparent) || OwnReparentUntaken(u))
                {
                    loopWaiting.Remove(u);
                    continue;
                }
                if (p != null && (scene.Capture(p) == null || Under(p, u))) continue; // not here yet, or still a loop
                attach.Changes.Add(new RemoteChange { Op = Ops.Reparent, Uuid = u, Parent = p });
            }
            if (attach.Changes.Count == 0) return;
            attach.Count = attach.Changes.Count;
            scene.ApplyBatch(attach);
            var ul = new List<object>();
            foreach (var c in attach.Changes)
            {
                loopWaiting.Remove(c.Uuid);
                synced[c.Uuid] = StateDiff.Apply(synced[c.Uuid], c);
                appliedHash.Remove(c.Uuid);
                ul.Add(c.Uuid);
            }
            Emit("loop_attached", new Dictionary<string, object> { { "uuids", ul } });
        }

        /// <summary>Whether <paramref name="x"/> is <paramref name="uuid"/> or under it here.</summary>
        bool Under(string x, string uuid)
        {
            var seen = new HashSet<string>(StringComparer.Ordinal);
            while (x != null && seen.Add(x))
            {
                if (x == uuid) return true;
                var st = scene.Capture(x);
                x = st == null ? null : st.Parent;
            }
            return false;
        }

        /// <summary>
        /// When <paramref name="parent"/> is under <paramref name="uuid"/> here (its parent chain
        /// leads to it) through an object whose parent a person changed here and the daemon has
        /// not taken: that object's uuid; else null. The chain takes an object's parent from
        /// <paramref name="batchParents"/> (the parent the batch's ops leave it with) where the
        /// batch names it.
        /// </summary>
        string OwnReparentLooping(string uuid, string parent, Dictionary<string, string> batchParents)
        {
            // The parent chain first; the person's parts are read only when it loops.
            var chain = new List<string>();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            string x = parent;
            while (x != null && x != uuid)
            {
                if (!seen.Add(x)) return null;
                chain.Add(x);
                string next;
                if (batchParents.TryGetValue(x, out next)) { x = next; continue; }
                var st = scene.Capture(x);
                x = st == null ? null : st.Parent;
            }
            if (x == null) return null;
            foreach (var c in chain) if (OwnReparentUntaken(c)) return c;
            return null;
        }

        /// <summary>Kept here as not synced, and no change of it in flight.</summary>
        bool KeptNotSent(string uuid)
        {
            return notSynced.ContainsKey(uuid) && !unresolved.ContainsKey(uuid) && scene.Holds(uuid);
        }

        bool OwnReparentUntaken(string uuid)
        {
            var parts = SentPartsOf(uuid);
            if (parts != null && (parts.Contains(Ops.Reparent) || parts.Contains(Ops.Create))) return true;
            // Kept here, not synced (its batch rolled back, kept_local): the daemon has not taken
            // it either, and the loop is here only. It loses to the batch's reparent like one not
            // captured yet (§6.4); what of it is the person's is not known any more (its base
            // became what was sent), so it goes whole (`LeaveOutLoops`).
            if (KeptNotSent(uuid)) return true;
            return dirty.Contains(uuid) && PartsChangedHere(uuid).Contains(Ops.Reparent);
        }

        /// <summary>
        /// The state this editor holds for the uuid is exactly what it sent on this connection, and
        /// the daemon queued it (acknowledged, no batch_result yet): it ends in a batch_result and
        /// becomes authoritative, so sending it again would only repeat it.
        /// </summary>
        bool SentStateIsCurrent(string uuid)
        {
            HashSet<string> reqs;
            if (resendFull.Contains(uuid) || !unresolved.TryGetValue(uuid, out reqs) || reqs.Contains(LostRequest)) return false;
            foreach (var list in pendingChange.Values)
                foreach (var kv in list)
                    if (kv.Key == uuid) return false; // not acknowledged yet (cannot happen: such resyncs wait)
            ObjectState sent;
            synced.TryGetValue(uuid, out sent);
            var cur = scene.Capture(uuid);
            return cur == null ? sent == null : sent != null && StateDiff.NearlyEquals(sent, cur);
        }

        void ApplyComplete(IncomingBatch b)
        {
            lostOver.Clear();
            keptLost.Clear();
            // Another parent of an object waiting for one (or its delete) has arrived.
            foreach (var c in b.Changes)
                if (c.Op == Ops.Create || c.Op == Ops.Reparent || c.Op == Ops.Delete) loopWaiting.Remove(c.Uuid);
            // A replay never undoes local work (§6.6): keep those uuids, answer what we hold, send it.
            var kept = new List<string>();
            // Kept uuids whose replayed parts the person did not change are applied (§6.6): uuid → the replay's state.
            var replayed = new Dictionary<string, ObjectState>(StringComparer.Ordinal);
            var toApply = b;
            if (b.Path == BatchPath.Resync)
            {
                var keptSet = new HashSet<string>();
                foreach (var c in b.Changes)
                    if (!keptSet.Contains(c.Uuid) && (HasLocalWork(c.Uuid) || StaleReplay(c.Uuid, b.Seq))) { keptSet.Add(c.Uuid); kept.Add(c.Uuid); }
                if (kept.Count > 0)
                {
                    toApply = new IncomingBatch { BatchId = b.BatchId, Seq = b.Seq, Path = b.Path };
                    foreach (var c in b.Changes)
                    {
                        if (!keptSet.Contains(c.Uuid)) { toApply.Changes.Add(c); continue; }
                        var parts = PartsNotChangedHere(c);
                        if (parts == null) continue;
                        toApply.Changes.AddRange(parts);
                        // The new base: the replay's state, with the parts of a change in flight as
                        // sent (what the daemon holds once it commits) — not sent again after it.
                        var theirs = StateDiff.Apply(null, c);
                        var inFlightParts = InFlight(c.Uuid) ? UnresolvedSentParts(c.Uuid) : null;
                        replayed[c.Uuid] = inFlightParts == null ? theirs : StateDiff.WithParts(theirs, Base(c.Uuid), inFlightParts);
                    }
                    toApply.Count = toApply.Changes.Count;
                    foreach (var u in kept)
                    {
                        appliedHash.Remove(u); // what we hold is ours, not an applied state: never an echo
                        if (replayed.ContainsKey(u)) { resendFull.Remove(u); continue; } // its other parts applied; the person's are sent
                        if (SentStateIsCurrent(u)) continue; // already on its way: it becomes authoritative
                        resendFull.Add(u);
                        dirty.Add(u);
                    }
                    ReplayKeptLocal += kept.Count;
                    var kl = new List<object>();
                    foreach (var u in kept) kl.Add(u);
                    Emit("replay_kept_local", new Dictionary<string, object> { { "batch_id", b.BatchId }, { "seq", b.Seq }, { "uuids", kl } });
                }
            }
            // A person's edit here not captured yet (PROTOCOL.md §6.4): the batch's op of a part
            // the person changed is not applied, the answer is the state the batch made, and the
            // edit stays dirty, to be sent after as a change of its own. Applying over it took the
            // person's value away, and capturing the uuid as applied swallowed the rest of the edit.
            var made = new Dictionary<string, ObjectState>(StringComparer.Ordinal);
            // Reparents not applied because they would make a parent loop with a person's reparent
            // here: uuid → the state the batch made (`LeaveOutLoops`).
            var loopSpared = new Dictionary<string, ObjectState>(StringComparer.Ordinal);
            // Objects automation's delete is not applied to, over a person's work here: uuid →
            // what the person did (`KeepFromAutomationsDelete`).
            var keptFromDelete = new Dictionary<string, string>(StringComparer.Ordinal);
            // uuid → the parts of its changes in flight that the batch's ops were not applied
            // over: what was sent stays the base for them, so they are not sent again (remembered
            // as sent; the Blender addon's `_as_sent`).
            var asSent = new Dictionary<string, HashSet<string>>(StringComparer.Ordinal);
            if (b.Path != BatchPath.Resync)
            {
                toApply = LeaveOutDeletedHere(toApply);
                var mine = new Dictionary<string, HashSet<string>>(StringComparer.Ordinal);
                foreach (var c in b.Changes)
                {
                    if (mine.ContainsKey(c.Uuid) || !dirty.Contains(c.Uuid)) continue;
                    var parts = PartsChangedHere(c.Uuid);
                    if (parts.Count > 0) mine[c.Uuid] = parts;
                }
                toApply = KeepFromAutomationsDelete(toApply, mine, keptFromDelete);
                if (mine.Count > 0) ReportDeletedOver(b, mine);
                // The parts of its changes sent without a result are the person's too (§6.4):
                // the daemon has not taken them yet, and holds this editor to keep them (a
                // `create` of its own spares nothing). Applied, another editor's full state
                // overwrote the person's rename that the batch commits, and nothing corrected it.
                foreach (var c in toApply.Changes)
                {
                    var sentNotTaken = InFlight(c.Uuid) ? UnresolvedSentParts(c.Uuid) : null;
                    if (sentNotTaken == null || sentNotTaken.Count == 0) continue;
                    HashSet<string> parts;
                    if (!mine.TryGetValue(c.Uuid, out parts)) mine[c.Uuid] = parts = new HashSet<string>(StringComparer.Ordinal);
                    parts.UnionWith(sentNotTaken);
                    asSent[c.Uuid] = sentNotTaken;
                }
                // Another editor's full state never takes the person's kept edit away (a rename
                // whose batch rolled back): it writes only what its person changed (§6.2), and
                // applied whole it took the kept rename away — nobody's name in both editors. (A
                // plain op of another editor is its person's later edit: applied.)
                var keptOf = new Dictionary<string, HashSet<string>>(StringComparer.Ordinal);
                foreach (var c in toApply.Changes)
                {
                    if (c.Op != Ops.Create) continue;
                    var keptHere = KeptParts(c.Uuid);
                    if (keptHere.Count > 0) keptOf[c.Uuid] = keptHere;
                }
                if (mine.Count > 0 || keptOf.Count > 0)
                {
                    var spare = new IncomingBatch { BatchId = b.BatchId, Seq = b.Seq, Path = b.Path };
                    foreach (var c in toApply.Changes)
                    {
                        HashSet<string> parts, keptHere;
                        bool isMine = mine.TryGetValue(c.Uuid, out parts);
                        if (!keptOf.TryGetValue(c.Uuid, out keptHere) || c.Op != Ops.Create) keptHere = null;
                        if (isMine || keptHere != null)
                        {
                            ObjectState s;
                            if (!made.TryGetValue(c.Uuid, out s)) s = Base(c.Uuid);
                            made[c.Uuid] = StateDiff.Apply(s, c);
                            if (isMine && parts.Contains(c.Op)) continue;
                            if (keptHere != null)
                            {
                                parts = isMine ? new HashSet<string>(parts, StringComparer.Ordinal) : new HashSet<string>(StringComparer.Ordinal);
                                parts.UnionWith(keptHere);
                            }
                            var cur = c.Op == Ops.Create ? scene.Capture(c.Uuid) : null;
                            if (cur != null)
                            {
                                // Another editor's full state (its not-synced edit sent again, say):
                                // a `create` names every part, so only the parts the person did
                                // not change are applied.
                                foreach (var op in StateDiff.Diff(cur, StateDiff.Apply(cur, c), StateHash.Epsilon, unitScale))
                                    if (!parts.Contains((string)op["op"]))
                                        spare.Changes.Add(RemoteChange.Parse(op, (string)op["op"] == Ops.Mesh ? c.Attachment : null, unitScale, "change"));
                                continue;
                            }
                        }
                        spare.Changes.Add(c);
                    }
                    spare.Count = spare.Changes.Count;
                    toApply = spare;
                    var ml = new List<object>();
                    foreach (var u in mine.Keys) ml.Add(u);
                    foreach (var u in keptOf.Keys) if (!mine.ContainsKey(u)) ml.Add(u);
                    Emit("local_edit_spared", new Dictionary<string, object> { { "batch_id", b.BatchId }, { "uuids", ml } });
                }
                toApply = LeaveOutLoops(b, toApply, loopSpared);
                KeptPartsOvertaken(toApply);
            }
            var keptUnderDeleted = KeptUnderDeleted(toApply);
            if (b.Path != BatchPath.Resync)
            {
                var over = Overtaking(b);
                if (over != null) overtook[b.BatchId] = over;
            }
            if (kept.Count == 0 || toApply.Changes.Count > 0)
            {
                try
                {
                    scene.ApplyBatch(toApply);
                }
                catch (Exception e)
                {
                    b.Broken = e.Message;
                    Fail("applying batch " + b.BatchId + " (seq " + b.Seq + ") failed: " + e.Message + "; the scene is unchanged and the daemon is told so");
                    AnswerUnapplied(b);
                    return;
                }
            }
            var hashes = new SortedDictionary<string, string>(StringComparer.Ordinal);
            foreach (var u in kept)
            {
                var st = scene.Capture(u);
                if (st != null) hashes[u] = st.Hash(); // deleted here: omitted, like any deleted uuid
            }
            foreach (var kv in replayed)
            {
                // What the daemon holds now; the person's parts stay dirty and are sent as changes.
                synced[kv.Key] = kv.Value;
                reconnectBase.Remove(kv.Key); // the replay's state is the base now
                dirty.Add(kv.Key);
            }
            foreach (var kv in made)
            {
                // What the batch made, as the daemon holds it; the person's edit stays dirty.
                appliedHash.Remove(kv.Key);
                if (kv.Value == null) { synced.Remove(kv.Key); hashes.Remove(kv.Key); continue; }
                HashSet<string> sentNotTaken;
                ObjectState before;
                // With the parts on their way as sent: their batch_result (and the correction of a
                // loser, §6.2) settles them, never this editor sending them again.
                synced[kv.Key] = asSent.TryGetValue(kv.Key, out sentNotTaken) && synced.TryGetValue(kv.Key, out before)
                    ? StateDiff.WithParts(kv.Value, before, sentNotTaken) : kv.Value;
                hashes[kv.Key] = kv.Value.Hash();
                dirty.Add(kv.Key);
            }
            var deletedHere = new HashSet<string>(StringComparer.Ordinal);
            foreach (var c in toApply.Changes)
            {
                if (made.ContainsKey(c.Uuid) || replayed.ContainsKey(c.Uuid)) continue;
                if (c.Op == Ops.Delete) deletedHere.Add(c.Uuid);
                var st = scene.Capture(c.Uuid);
                dirty.Remove(c.Uuid);
                if (st == null)
                {
                    synced.Remove(c.Uuid);
                    appliedHash.Remove(c.Uuid);
                    hashes.Remove(c.Uuid);
                    continue;
                }
                string h = st.Hash();
                hashes[c.Uuid] = h;
                synced[c.Uuid] = st;
                appliedHash[c.Uuid] = h;
                confirmed.Add(c.Uuid);
            }
            foreach (var kv in loopSpared)
                if (kv.Value != null) hashes[kv.Key] = kv.Value.Hash(); // what the batch made; what it holds stays its base
            if (deletedHere.Count > 0)
            {
                // A received `delete` removes that one object (PROTOCOL.md §6.1): the scene made
                // its children roots where they stand, and their fate is the origin's to send.
                // That is the batch's doing, not a person's edit here: no echo. Anything else
                // the batch did not name and that is gone now is told to the daemon (a `delete`
                // each) like a local delete.
                foreach (var u in new List<string>(synced.Keys))
                {
                    if (hashes.ContainsKey(u)) continue;
                    var st = scene.Capture(u);
                    if (st == null) { dirty.Add(u); continue; }
                    ObjectState was = synced[u];
                    if (was != null && was.Parent != null && deletedHere.Contains(was.Parent) && st.Parent == null && !dirty.Contains(u))
                    {
                        synced[u] = st;
                        appliedHash[u] = st.Hash();
                    }
                }
            }
            // Their kept edit named a parent that is gone: what stands now goes (§6.1, §6.4).
            if (keptUnderDeleted.Count > 0) RetryNotSynced(keptUnderDeleted, "the object it was under was deleted");
            foreach (var c in toApply.Changes)
            {
                if (c.Op != Ops.Create && c.Op != Ops.Reparent && c.Op != Ops.Delete) continue;
                ParentsChanged("a batch changed the parents it was refused for");
                if (structuralBatches.Add(b.BatchId))
                {
                    structuralOrder.Enqueue(b.BatchId);
                    // A resync's batch has no result: the oldest are forgotten.
                    if (structuralOrder.Count > MaxReceivedBatches) structuralBatches.Remove(structuralOrder.Dequeue());
                }
                break;
            }
            AttachLoopWaiting(b.Seq);
            long baseBefore = Math.Min(LastSeq, b.Seq - 1);
            if (b.Seq > LastSeq) LastSeq = b.Seq;
            BatchesApplied++;
            if (b.Path == BatchPath.Resync) ResyncBatchesApplied++;
            SortedDictionary<string, string> failed = null;
            foreach (var kv in keptFromDelete)
            {
                // Not deleted: answered as Unity holds it, so the batch rolls back, and
                // automation's delete with it, everywhere (§6.4); the person's edit goes after.
                var st = scene.Capture(kv.Key);
                if (st == null) continue;
                hashes[kv.Key] = st.Hash();
                if (failed == null) failed = new SortedDictionary<string, string>(StringComparer.Ordinal);
                failed[kv.Key] = st.Name + ": a person in Unity was editing it (" + kv.Value + ") when automation's delete of it arrived; Unity keeps it";
            }
            // What it left unapplied, in whole or in part, for a person's edit here (or could not
            // apply as sent): the daemon reads every other uuid as held as sent (§6.4).
            var spared = new HashSet<string>(kept, StringComparer.Ordinal);
            spared.UnionWith(made.Keys);
            spared.UnionWith(loopSpared.Keys);
            spared.UnionWith(keptFromDelete.Keys);
            SendApplied(b, hashes, failed, spared);
            // The person's edits the batch wins over go out after the answer, from the base
            // before the batch: refused STALE or dropped, a conflict the batch won (§6.1).
            foreach (var r in lostOver)
                if (client.IsConnected) SendOne(r.Value, RepeatUuid(r.Key, r.Value.Count), null, baseBefore);
            lostOver.Clear();
            if (keptLost.Count > 0 && client.IsConnected)
            {
                // Kept edits whose reparent loops with the batch's: whole, from the same base.
                var ops = new List<Dictionary<string, object>>();
                var ids = new List<string>();
                foreach (var u in keptLost)
                {
                    var cur = scene.Capture(u);
                    if (cur == null) continue;
                    ops.Add(cur.ToCreateOp(unitScale));
                    ids.Add(u);
                }
                SendChanges(ops, ids, baseBefore);
            }
            keptLost.Clear();
            var hf = new Dictionary<string, object>();
            foreach (var kv in hashes) hf[kv.Key] = kv.Value;
            Emit("applied", new Dictionary<string, object>
            {
                { "batch_id", b.BatchId }, { "seq", b.Seq }, { "path", b.Path }, { "count", (long)b.Changes.Count }, { "hashes", hf },
                { "kept_local", (long)kept.Count },
            });
        }

        // ------------------------------------------------------------------ outgoing

        /// <summary>Safe mode (§6.7): the edits waiting to be sent are marked not synced with why,
        /// in the window and `Stats`, and go in full once a person clears safe mode; a commit clears
        /// the mark (the Blender addon's `Session._mark_held`). A pass only when more waits.</summary>
        void MarkHeld()
        {
            if (dirty.Count == heldSeen) return;
            heldSeen = dirty.Count;
            string why = ErrorCode.SafeMode + ": " + (string.IsNullOrEmpty(SafeModeReason) ? "the daemon is in safe mode" : SafeModeReason);
            foreach (var u in dirty)
            {
                if (notSynced.ContainsKey(u) || tombstoning.Contains(u) || !scene.Holds(u)) continue;
                notSynced[u] = why;
                resendFull.Add(u);
            }
        }
        int heldSeen;

        /// <summary>Safe mode (§6.7): tells the daemon which edits wait here (`editor_state.held`,
        /// the first MaxHeld and how many in all), so that `vibesync status` lists them as not
        /// synced here; again whenever that changes. The daemon forgets the list when safe mode
        /// ends: they are sent then (the Blender addon's `Session._report_held`).</summary>
        void ReportHeld()
        {
            // A pass reads every not-synced mark: at most every HeldReportEvery, not each frame.
            if (heldReported != null && clock.Elapsed - heldReadAt < HeldReportEvery) return;
            heldReadAt = clock.Elapsed;
            string prefix = ErrorCode.SafeMode + ":";
            var held = new List<string>();
            foreach (var kv in notSynced) if (kv.Value.StartsWith(prefix, StringComparison.Ordinal)) held.Add(kv.Key);
            held.Sort(StringComparer.Ordinal);
            if (heldReported == null ? held.Count == 0 : SameList(heldReported, held)) { heldReported = held; return; }
            heldReported = held;
            var listed = new List<object>();
            for (int i = 0; i < held.Count && i < MaxHeld; i++) listed.Add(held[i]);
            client.Send(new Dictionary<string, object>
            {
                { "type", MessageType.EditorState }, { "state", Paused ? EditorRunState.Paused : EditorRunState.Running },
                { "reason", Paused ? (PauseReason ?? "") : "holding " + held.Count + " edit(s) while the daemon is in safe mode" },
                { "held", listed }, { "held_count", (long)held.Count },
            });
        }
        List<string> heldReported; // what `editor_state.held` last told this connection
        TimeSpan heldReadAt;
        static readonly TimeSpan HeldReportEvery = TimeSpan.FromMilliseconds(250);

        static bool SameList(List<string> a, List<string> b)
        {
            if (a.Count != b.Count) return false;
            for (int i = 0; i < a.Count; i++) if (!string.Equals(a[i], b[i], StringComparison.Ordinal)) return false;
            return true;
        }

        void ProcessDirty(TimeSpan budget)
        {
            if (SafeMode && client.IsConnected) { MarkHeld(); ReportHeld(); }
            if (dirty.Count == 0 || Paused || SafeMode || !client.IsConnected || !initialRegisterDone) return;
            if (retryLaterClock.Elapsed < retryLaterPause) return; // the daemon asked to retry later (§2)
            var sw = Stopwatch.StartNew();
            var ops = new List<Dictionary<string, object>>();
            var opUuids = new List<string>();
            var toRegister = new List<ObjectState>();
            var toTombstone = new List<string>();
            var done = new List<string>();
            foreach (var uuid in dirty)
            {
                if (registering.Contains(uuid)) continue; // decided when the register ack arrives
                if (adoptable.Contains(uuid)) continue; // waits for the first replay (Adopt)
                if (OvertakenUnheard(uuid)) continue; // waits for the daemon to say what stands (AskOvertaken)
                // One change per uuid in flight (PROTOCOL §6.6, pipeline step `send`): a newer edit
                // waits, still dirty, until the previous change ends (batch_result naming the uuid, or
                // a refusal), so a result never resolves work it did not cover. Edits meanwhile coalesce.
                // Except a drag: while only fast-path changes of the uuid are in flight, an edit of
                // fast-path parts only goes at once (the result's `through` says which it ends).
                bool busy = InFlight(uuid);
                if (tombstoning.Contains(uuid)) continue;
                if (busy && (slowInFlight.Contains(uuid) || notSynced.ContainsKey(uuid) || resendFull.Contains(uuid))) continue;
                if (sw.Elapsed > budget && done.Count > 0) break;
                done.Add(uuid);
                var cur = scene.Capture(uuid);
                ObjectState before;
                synced.TryGetValue(uuid, out before);
                if (cur == null && busy)
                {
                    done.RemoveAt(done.Count - 1); // a delete waits, still dirty, for the moves in flight
                    continue;
                }
                if (cur == null)
                {
                    // A person's delete: a `tombstone` request (§5), not a change (§6.2) — also
                    // of an object deleted right after its scene opened, before any synced state
                    // of it (its base is the scene as loaded, §6.6).
                    resendFull.Remove(uuid);
                    if (before != null || unresolved.ContainsKey(uuid) || reconnectBase.ContainsKey(uuid)) toTombstone.Add(uuid);
                    continue;
                }
                // Kept over a replay or unresolved when the connection dropped: the daemon's state is
                // unknown, send ours in full. A change lost with its connection that diffs to nothing
                // (or looks like an echo) is also sent in full, so it ends in a batch_result.
                bool full = resendFull.Remove(uuid);
                if (!full && cur != null)
                {
                    string h;
                    if (appliedHash.TryGetValue(uuid, out h) && h == cur.Hash())
                    {
                        synced[uuid] = cur; // our own apply coming back a frame later
                        if (!OnlyLost(uuid)) continue;
                        full = true;
                    }
                }
                if (!full && before == null && cur != null)
                {
                    toRegister.Add(cur); // new object: register, then `create` after the ack
                    continue;
                }
                var diff = full ? new List<Dictionary<string, object>>() : StateDiff.Diff(before, cur, StateHash.Epsilon, unitScale);
                if (diff.Count == 0 && (full || OnlyLost(uuid))) diff.Add(cur.ToCreateOp(unitScale));
                if (busy && diff.Exists(op => !Ops.IsFastPath((string)op["op"])))
                {
                    done.RemoveAt(done.Count - 1); // waits, still dirty, for the moves in flight
                    continue;
                }
                foreach (var op in diff)
                {
                    ops.Add(op);
                    opUuids.Add(uuid);
                }
            }
            foreach (var u in done) dirty.Remove(u);
            if (toRegister.Count > 0) SendRegister(toRegister);
            if (ops.Count > 0)
            {
                MarkUserActive();
                SendInRuns(ops, opUuids);
            }
            if (away.Count > 0)
            {
                foreach (var u in done) away.Remove(u);
                if (away.Count == 0) replayed.Clear();
            }
            SendTombstone(toTombstone); // after the changes: a child's reparent out of it goes first
        }

        void MarkUserActive()
        {
            sinceUserEdit.Reset();
            sinceUserEdit.Start();
            if (!userActive && client.Send(Msg.UserActivity(true))) userActive = true;
        }

        /// <summary>
        /// SendChanges, a person's edits made while away first, from the seq they were made on
        /// (`awaySeq`, PROTOCOL §6.6 "Edits made while away"); a whole `create` of an object the
        /// first replay brought goes with the rest, from the current seq.
        /// </summary>
        void SendInRuns(List<Dictionary<string, object>> ops, List<string> uuids)
        {
            if (away.Count == 0) { SendChanges(ops, uuids); return; }
            var awayOps = new List<Dictionary<string, object>>();
            var awayUuids = new List<string>();
            var restOps = new List<Dictionary<string, object>>();
            var restUuids = new List<string>();
            for (int i = 0; i < ops.Count; i++)
            {
                bool made = away.Contains(uuids[i]) && !((string)ops[i]["op"] == Ops.Create && replayed.Contains(uuids[i]));
                (made ? awayOps : restOps).Add(ops[i]);
                (made ? awayUuids : restUuids).Add(uuids[i]);
            }
            // A change lost with its connection that lost a loop to a batch goes from before it.
            var byBase = new SortedDictionary<long, KeyValuePair<List<Dictionary<string, object>>, List<string>>>();
            for (int i = 0; i < awayOps.Count; i++)
            {
                long fb, at = flightBase.TryGetValue(awayUuids[i], out fb) ? Math.Min(fb, awaySeq) : awaySeq;
                // Lost with the connection again before the daemon answers it, it goes again from
                // this seq, not the newer one Unity connects with then (model seeds 2020, 3012).
                flightBase[awayUuids[i]] = at;
                KeyValuePair<List<Dictionary<string, object>>, List<string>> run;
                if (!byBase.TryGetValue(at, out run))
                    byBase[at] = run = new KeyValuePair<List<Dictionary<string, object>>, List<string>>(new List<Dictionary<string, object>>(), new List<string>());
                run.Key.Add(awayOps[i]);
                run.Value.Add(awayUuids[i]);
            }
            foreach (var kv in byBase) SendChanges(kv.Value.Key, kv.Value.Value, kv.Key);
            if (restOps.Count > 0) SendChanges(restOps, restUuids);
        }

        /// <summary>
        /// Sends ops in `change` messages, in order, `create`s of parents before their children.
        /// A `mesh` op or a `create` with `mesh_hash` travels alone in its frame with the mesh
        /// buffer as the attachment (§6.1, §7); the ops before it are flushed first so the daemon
        /// receives everything in the original order.
        /// </summary>
        void SendChanges(List<Dictionary<string, object>> ops, List<string> uuids, long baseSeq = -1)
        {
            OrderCreatesParentFirst(ops, uuids);
            var plain = new List<object>();
            var plainUuids = new List<string>();
            var plainNamed = new Dictionary<string, string>(StringComparer.Ordinal);
            Action sendPlain = () =>
            {
                string rid = SendOne(plain, plainUuids, null, baseSeq);
                if (rid != null && plainNamed.Count > 0) namedMeshes[rid] = plainNamed;
                plain = new List<object>();
                plainUuids = new List<string>();
                plainNamed = new Dictionary<string, string>(StringComparer.Ordinal);
            };
            for (int i = 0; i < ops.Count; i++)
            {
                string opName = (string)ops[i]["op"];
                object mh;
                // Each geometry once per connection (§6.1): a mesh the daemon took, or that an
                // earlier frame of this connection carries, is only named.
                bool named = ops[i].TryGetValue("mesh_hash", out mh) && mh is string && daemonMeshes.ContainsKey((string)mh);
                if (!named && (opName == Ops.Mesh || (opName == Ops.Create && ops[i].ContainsKey("mesh_hash") && ops[i]["mesh_hash"] != null)))
                {
                    byte[] att = scene.MeshAttachment(uuids[i]);
                    if (att == null || att.Length == 0)
                    {
                        if (opName == Ops.Mesh) { Fail("mesh of " + uuids[i] + " changed but its buffer is unavailable; not sent"); continue; }
                        Fail("mesh of " + uuids[i] + " is unavailable; its `create` is sent without mesh");
                        ops[i].Remove("mesh_hash");
                    }
                    else
                    {
                        if (plain.Count > 0) sendPlain();
                        string carrier = SendOne(new List<object> { ops[i] }, new List<string> { uuids[i] }, att, baseSeq);
                        if (carrier != null && mh is string) daemonMeshes[(string)mh] = carrier;
                        continue;
                    }
                }
                plain.Add(ops[i]);
                plainUuids.Add(uuids[i]);
                if (named) plainNamed[uuids[i]] = (string)mh;
                if (plain.Count == MaxOpsPerChange) sendPlain();
            }
            if (plain.Count > 0) sendPlain();
        }

        /// <summary>
        /// Reorders the `create`s among the slots they occupy so that an ancestor created in the
        /// same list comes before its descendants — also through an ancestor the list does not
        /// carry (each child right after it when it had to move); everything else keeps its order.
        /// Kept work sent again (6f under 7f, 8f to the root, with 7f's committed parent 8f and
        /// 8f's 6f) went child first and closed a loop with 8f's committed parent: refused
        /// INVALID_FIELD, held here for good (PROTOCOL.md §6.1).
        /// </summary>
        void OrderCreatesParentFirst(List<Dictionary<string, object>> ops, List<string> uuids)
        {
            var createdAt = new Dictionary<string, int>();
            var slots = new List<int>();
            for (int i = 0; i < ops.Count; i++)
                if ((string)ops[i]["op"] == Ops.Create) { createdAt[uuids[i]] = i; slots.Add(i); }
            if (slots.Count < 2) return;
            var order = new List<int>();
            var state = new Dictionary<int, int>(); // 1 = visiting, 2 = placed
            // The nearest ancestor the list creates: its parent here, walked up through the
            // objects it does not carry (their last synced parent; bounded, a loop ends it).
            Func<string, string> nearest = p =>
            {
                for (int steps = 0; p != null && steps <= synced.Count + 1; steps++)
                {
                    if (createdAt.ContainsKey(p)) return p;
                    ObjectState st;
                    if (!synced.TryGetValue(p, out st) || st == null) st = scene.Capture(p);
                    p = st == null ? null : st.Parent;
                }
                return null;
            };
            foreach (int i in slots) PlaceAfterParent(i, ops, createdAt, state, order, nearest);
            var newOps = new List<Dictionary<string, object>>(ops);
            var newUuids = new List<string>(uuids);
            for (int k = 0; k < slots.Count; k++)
            {
                newOps[slots[k]] = ops[order[k]];
                newUuids[slots[k]] = uuids[order[k]];
            }
            ops.Clear(); ops.AddRange(newOps);
            uuids.Clear(); uuids.AddRange(newUuids);
        }

        static void PlaceAfterParent(int i, List<Dictionary<string, object>> ops, Dictionary<string, int> createdAt, Dictionary<int, int> state, List<int> order, Func<string, string> nearest)
        {
            int st;
            if (state.TryGetValue(i, out st)) return; // placed, or a parent cycle (left as is)
            state[i] = 1;
            object p;
            int pi;
            string a = ops[i].TryGetValue("parent", out p) && p is string ? nearest((string)p) : null;
            if (a != null && createdAt.TryGetValue(a, out pi))
                PlaceAfterParent(pi, ops, createdAt, state, order, nearest);
            state[i] = 2;
            order.Add(i);
        }

        /// <summary>Sends one `change`; its request id, or null when the connection could not take it.</summary>
        string SendOne(List<object> ops, List<string> uuids, byte[] attachment, long baseSeq = -1)
        {
            string rid = NextRequestId("c");
            // Remember the previous synced state so an unacknowledged change can be retried.
            var prev = new List<KeyValuePair<string, ObjectState>>();
            var distinct = new HashSet<string>(); // the request's uuids, once each
            foreach (var u in uuids)
            {
                if (!distinct.Add(u)) continue;
                ObjectState before;
                synced.TryGetValue(u, out before);
                prev.Add(new KeyValuePair<string, ObjectState>(u, before));
                var now = scene.Capture(u);
                if (now == null) synced.Remove(u); else synced[u] = now;
                // What this editor last applied is no longer what it holds as synced: a person's
                // later edit back to that value (a hide undone and made again) is an edit, not
                // our own apply coming back. Kept, it was taken for an echo and never sent: the
                // editors differed for good (PROTOCOL §6.3, random edits of the eye, e2e).
                appliedHash.Remove(u);
            }
            var marks = new Dictionary<string, object>(StringComparer.Ordinal);
            foreach (var u in distinct)
            {
                long mark;
                if (liveSeen.TryGetValue(u, out mark)) marks[u] = mark;
            }
            if (!client.Send(Msg.Change(rid, baseSeq < 0 ? LastSeq : baseSeq, ops, marks), attachment))
            {
                foreach (var kv in prev) { if (kv.Value == null) synced.Remove(kv.Key); else synced[kv.Key] = kv.Value; dirty.Add(kv.Key); }
                return null;
            }
            pendingChange[rid] = prev;
            var started = new HashSet<string>(StringComparer.Ordinal);
            for (int i = 0; i < ops.Count; i++)
            {
                string u = uuids[i];
                Dictionary<string, HashSet<string>> byRequest;
                if (started.Add(u))
                {
                    // A uuid with nothing unresolved starts afresh; one whose change was lost with its
                    // connection adds to what that change carried (this one re-sends it).
                    if (!unresolved.ContainsKey(u) || !sentParts.TryGetValue(u, out byRequest))
                        sentParts[u] = byRequest = new Dictionary<string, HashSet<string>>(StringComparer.Ordinal);
                    HashSet<string> lost;
                    var carried = byRequest.TryGetValue(LostRequest, out lost) ? new HashSet<string>(lost, StringComparer.Ordinal) : new HashSet<string>(StringComparer.Ordinal);
                    byRequest.Remove(LostRequest);
                    byRequest[rid] = carried;
                }
                string opName = (string)((Dictionary<string, object>)ops[i])["op"];
                sentParts[u][rid].Add(opName);
                if (!Ops.IsFastPath(opName)) slowInFlight.Add(u);
            }
            foreach (var u in distinct)
            {
                HashSet<string> reqs;
                if (!unresolved.TryGetValue(u, out reqs)) unresolved[u] = reqs = new HashSet<string>();
                reqs.Remove(LostRequest); // this change carries the current state: it replaces the lost one
                reqs.Add(rid);
                sentAtJoins[u] = peerJoins;
            }
            ChangeMessagesSent++;
            ChangeOpsSent += ops.Count;
            var opNames = new List<object>();
            foreach (Dictionary<string, object> op in ops) opNames.Add(op["op"]);
            var uuidList = new List<object>();
            foreach (var u in distinct) uuidList.Add(u);
            Emit("change_sent", new Dictionary<string, object>
            {
                { "request_id", rid }, { "ops", (long)ops.Count }, { "op_names", opNames }, { "uuids", uuidList }, { "base_seq", LastSeq },
                { "attachment_bytes", (long)(attachment == null ? 0 : attachment.Length) },
            });
            if (attachment != null) MeshBytesSent += attachment.Length;
            return rid;
        }
    }

    /// <summary>First-sync progress (SyncEngine.Progress): objects confirmed synced of those tracked.</summary>
    public struct SyncProgress
    {
        public long Synced, Total;
    }

    /// <summary>Another scene-holding session of the project (PROTOCOL §6.8 `peers`).</summary>
    public sealed class Peer
    {
        public string SessionId, Client, ClientId;
    }
}
