// Pipeline step `replay`, after an editor crash before its scene was saved (PROTOCOL §6.6,
// "A file without saved identities"): objects that carried no uuid when the scene was opened
// get fresh ones, but the daemon may know them under the uuids they had before the crash.
// They take those uuids back from the first replay, so nothing is duplicated on either side.
using System.Collections.Generic;

namespace VibeSync.Bridge.Core
{
    /// <summary>
    /// Optional capability of an <see cref="ISceneAdapter"/>: it knows which objects carried no
    /// uuid when the scene was opened (a scene never saved since they were synced).
    /// </summary>
    public interface IAdoptingScene
    {
        /// <summary>uuids given, since the scene was opened, to objects that carried none.</summary>
        ICollection<string> FreshUuids { get; }
        /// <summary>The object bound to <paramref name="fresh"/> takes <paramref name="known"/> (its
        /// children follow). False when it cannot (then it keeps its fresh uuid).</summary>
        bool AdoptUuid(string fresh, string known);
        /// <summary>No replayed object matched: the fresh uuid is the object's own from now on.</summary>
        void KeepFresh(string uuid);
    }

    public static class Adoption
    {
        /// <summary>
        /// Pairs replayed objects with local objects that got fresh uuids: fresh uuid -> the daemon's
        /// uuid, only for unambiguous pairs (exactly one replayed `create` this scene does not hold
        /// and exactly one fresh local object of that kind and name). The Blender addon applies the
        /// same rule (engine.match_adoptions).
        /// </summary>
        public static Dictionary<string, string> Match(IEnumerable<RemoteChange> replayed, IDictionary<string, ObjectState> fresh, System.Func<string, bool> heldHere)
        {
            var incoming = new Dictionary<string, List<string>>();
            foreach (var c in replayed)
            {
                if (c.Op != Ops.Create || heldHere(c.Uuid)) continue;
                Add(incoming, c.Kind + "\n" + c.Name, c.Uuid);
            }
            var local = new Dictionary<string, List<string>>();
            foreach (var kv in fresh) Add(local, kv.Value.Kind + "\n" + kv.Value.Name, kv.Key);
            var pairs = new Dictionary<string, string>();
            foreach (var kv in incoming)
            {
                List<string> mine;
                if (kv.Value.Count == 1 && local.TryGetValue(kv.Key, out mine) && mine.Count == 1) pairs[mine[0]] = kv.Value[0];
            }
            return pairs;
        }

        static void Add(Dictionary<string, List<string>> d, string key, string uuid)
        {
            List<string> l;
            if (!d.TryGetValue(key, out l)) d[key] = l = new List<string>();
            if (!l.Contains(uuid)) l.Add(uuid);
        }
    }
}
