//! Restore from the ghost audit (docs/ARCHITECTURE.md "Restore"): the audit points a person
//! can go back to ([`history`]), a project's state at one of them ([`states_at`]), and the
//! plan — the `change` ops that bring today's state back to it ([`plan`], pure).
//!
//! Read-only: the audit repository is opened read-only beside the audit thread (git readers
//! never block its writer) and the WAL is read with the same [`Reader`] as `tail`. A restore
//! itself is not done here: the CLI sends the plan as one `change` from a `cli` session, a
//! new transaction like any person's edit — forwarded to every connected editor, verified,
//! committed, audited. History is never rewritten, and a restore is undone by restoring to
//! the audit point before it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;
use serde_json::{json, Value};
use vibesync_protocol::state::state_hash;
use vibesync_wal::{Phase, Reader};

use crate::{DaemonError, DataDir};

/// One commit of the audit history.
#[derive(Debug, Clone, Serialize)]
pub struct AuditPoint {
    pub commit: String,
    /// Commit time, RFC 3339 UTC.
    pub time: String,
    #[serde(skip)]
    pub unix: i64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub operations: Vec<String>,
    /// What changed in the project (and uuid) asked about.
    pub changes: Vec<PointChange>,
    /// Who made the operations of this point.
    pub who: Vec<Who>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PointChange {
    pub uuid: String,
    pub kind: String,
    pub name: String,
    pub change: ChangeKind,
    /// For `changed`: which parts (`transform`, `name`, `parent`, `visible`, `mesh`,
    /// `material`, `status`, `registration`).
    pub fields: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Created,
    Changed,
    Deleted,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Created => "created",
            ChangeKind::Changed => "changed",
            ChangeKind::Deleted => "deleted",
        }
    }
}

/// The origin of an operation, as the WAL knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Who {
    /// `blender`, `unity`, `cli` (a restore), `agent`, `daemon`: from the batch's BEGIN
    /// (`origin_editors`), else from the session's `register` records; `None` if unknown.
    pub editor: Option<String>,
    pub session_id: String,
    /// The agent tool, when an agent's tool call caused the change.
    pub tool: Option<String>,
}

impl Who {
    pub fn describe(&self) -> String {
        let short = self.session_id.get(..8).unwrap_or(&self.session_id);
        let mut s = match &self.editor {
            Some(e) => format!("{e} (session {short})"),
            None => format!("session {short}"),
        };
        if let Some(t) = &self.tool {
            s.push_str(&format!(" via agent tool {t}"));
        }
        s
    }
}

fn git_err(what: &str, data: &DataDir, e: git2::Error) -> DaemonError {
    DaemonError::DataDir { path: data.audit(), message: format!("audit repository: {what}: {}", e.message()) }
}

fn open_repo(data: &DataDir) -> Result<git2::Repository, DaemonError> {
    if !data.audit().exists() {
        return Err(DaemonError::DataDir {
            path: data.audit(),
            message: "no audit repository: nothing to list or restore (is `[audit] enabled = false`?)".into(),
        });
    }
    git2::Repository::open_bare(data.audit()).map_err(|e| git_err("open", data, e))
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix).map(vibesync_wal::format_ts).unwrap_or_else(|_| unix.to_string())
}

/// Every commit on the audit branch, newest first, with its seq range and operations (no
/// diff). The building block of [`history`] and [`resolve`].
fn commits(repo: &git2::Repository, data: &DataDir) -> Result<Vec<AuditPoint>, DaemonError> {
    let head = match repo.find_reference(vibesync_audit::BRANCH) {
        Ok(r) => r.peel_to_commit().map_err(|e| git_err("read the branch head", data, e))?,
        Err(_) => return Ok(vec![]), // no commit yet
    };
    let mut walk = repo.revwalk().map_err(|e| git_err("walk", data, e))?;
    walk.push(head.id()).map_err(|e| git_err("walk", data, e))?;
    let mut out = vec![];
    for oid in walk {
        let oid = oid.map_err(|e| git_err("walk", data, e))?;
        let c = repo.find_commit(oid).map_err(|e| git_err("read a commit", data, e))?;
        let msg = c.message().unwrap_or("");
        let (first_seq, last_seq) = vibesync_audit::parse_range(msg).unwrap_or((0, 0));
        let operations = msg
            .lines()
            .filter_map(|l| l.strip_prefix(vibesync_audit::TRAILER_OPERATION).and_then(|r| r.strip_prefix(':')))
            .map(|s| s.trim().to_string())
            .collect();
        let unix = c.time().seconds();
        out.push(AuditPoint {
            commit: oid.to_string(),
            time: rfc3339(unix),
            unix,
            first_seq,
            last_seq,
            operations,
            changes: vec![],
            who: vec![],
        });
    }
    Ok(out)
}

/// Where `--to` points: a commit (hex prefix, ≥ 4 chars, or `commit:HEX`), a WAL seq (digits
/// or `seq:N`: the newest point covering seqs ≤ N) or a time (RFC 3339 or `time:T`: the
/// newest point committed at or before it). Bare digits that also start a commit are an
/// error naming both readings.
pub fn resolve(data: &DataDir, to: &str) -> Result<AuditPoint, DaemonError> {
    let repo = open_repo(data)?;
    let all = commits(&repo, data)?;
    let bad = |m: String| DaemonError::DataDir { path: data.audit(), message: m };
    let (kind, val) = match to.split_once(':') {
        Some((k @ ("commit" | "seq" | "time"), v)) => (k, v),
        _ if !to.is_empty() && to.bytes().all(|b| b.is_ascii_digit()) => ("seq", to),
        _ if to.contains('T') && to.contains(':') => ("time", to),
        _ => ("commit", to),
    };
    if kind == "seq" && !to.contains(':') && val.len() >= 4 {
        // Digits may also start a commit: which one is meant is asked, never guessed (a short
        // commit copied from `vibesync history` that happens to be all digits read as a seq
        // would restore another point).
        if let Some(p) = all.iter().find(|p| p.commit.starts_with(val)) {
            return Err(bad(format!(
                "--to `{to}` is a seq and the start of audit commit {}; say `seq:{to}` or `commit:{to}`",
                &p.commit[..12]
            )));
        }
    }
    let found = match kind {
        "seq" => {
            let n: u64 = val.parse().map_err(|_| bad(format!("--to seq `{val}` is not a number")))?;
            all.into_iter().find(|p| p.last_seq <= n)
        }
        "time" => {
            let t = time::OffsetDateTime::parse(val, &time::format_description::well_known::Rfc3339)
                .map_err(|e| bad(format!("--to time `{val}`: {e}; use RFC 3339, e.g. 2026-11-22T10:15:00Z")))?;
            let unix = t.unix_timestamp();
            all.into_iter().find(|p| p.unix <= unix)
        }
        _ => {
            let v = val.to_ascii_lowercase();
            if v.len() < 4 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad(format!(
                    "--to `{to}` is not a commit (≥ 4 hex chars), a seq (digits) or a time (RFC 3339)"
                )));
            }
            let mut m: Vec<AuditPoint> = all.into_iter().filter(|p| p.commit.starts_with(&v)).collect();
            if m.len() > 1 {
                return Err(bad(format!("--to `{to}` matches {} audit commits; give more hex digits", m.len())));
            }
            m.pop()
        }
    };
    found.ok_or_else(|| bad(format!("no audit point matches --to `{to}` (see `vibesync history`)")))
}

/// Registry entries of `project_id` in the tree of `commit`: uuid → entry JSON.
fn entries_at(
    repo: &git2::Repository,
    data: &DataDir,
    tree: &git2::Tree<'_>,
    project_id: &str,
) -> Result<BTreeMap<String, Value>, DaemonError> {
    let mut out = BTreeMap::new();
    // Flat or fanned out (docs/WAL.md §9); no directory: no live entry at this point.
    let ids = vibesync_audit::project_entries(repo, tree, project_id)
        .map_err(|e| git_err("read the project's entries", data, e))?;
    for (uuid, id) in ids {
        let blob = repo.find_blob(id).map_err(|e| git_err("read a blob", data, e))?;
        let v: Value = serde_json::from_slice(blob.content()).map_err(|err| DaemonError::DataDir {
            path: data.audit(),
            message: format!("audit entry of {uuid} in registry/{project_id}/ is not JSON: {err}"),
        })?;
        out.insert(uuid, v);
    }
    Ok(out)
}

/// The synced state (docs/PROTOCOL.md §6.5) of every live object and collection of
/// `project_id` at `point`: uuid → state.
pub fn states_at(data: &DataDir, point: &AuditPoint, project_id: &str) -> Result<BTreeMap<String, Value>, DaemonError> {
    let repo = open_repo(data)?;
    let oid = git2::Oid::from_str(&point.commit).map_err(|e| git_err("parse the commit id", data, e))?;
    let tree = repo.find_commit(oid).and_then(|c| c.tree()).map_err(|e| git_err("read the commit", data, e))?;
    Ok(entries_at(&repo, data, &tree, project_id)?
        .into_iter()
        .filter(|(_, e)| e["status"] == "live" && e["state"].is_object())
        .map(|(u, e)| (u, e["state"].clone()))
        .collect())
}

/// Which parts of an entry differ.
fn changed_fields(old: &Value, new: &Value) -> Vec<String> {
    let mut f = BTreeSet::new();
    let (os, ns) = (&old["state"], &new["state"]);
    for k in ["t", "r", "s"] {
        if os[k] != ns[k] {
            f.insert("transform");
        }
    }
    for (k, name) in [
        ("name", "name"),
        ("parent", "parent"),
        ("visible", "visible"),
        ("mesh_hash", "mesh"),
        ("material", "material"),
    ] {
        if os[k] != ns[k] {
            f.insert(name);
        }
    }
    if old["name"] != new["name"] {
        f.insert("name");
    }
    if old["status"] != new["status"] {
        f.insert("status");
    }
    if f.is_empty() {
        f.insert("registration");
    }
    f.into_iter().map(String::from).collect()
}

/// Session → editor (from `register` records) and operation → its BEGIN, from the WAL.
struct Origins {
    editors: HashMap<String, String>,
    begins: HashMap<String, (String, Value)>,
}

fn origins(data: &DataDir) -> Result<Origins, DaemonError> {
    let mut o = Origins { editors: HashMap::new(), begins: HashMap::new() };
    if !data.wal().exists() {
        return Ok(o);
    }
    for item in Reader::open(data.wal())? {
        let Ok(e) = item else { continue };
        let r = e.record;
        // `register` BEGINs and STEPs (also written for a `create`) name the editor.
        if let Some(ed) = r.payload["editor"].as_str() {
            let session = r.payload["session_id"].as_str().unwrap_or(&r.session_id);
            o.editors.insert(session.to_string(), ed.to_string());
        }
        if r.phase == Phase::Begin {
            o.begins.insert(r.operation_id, (r.session_id, r.payload));
        }
    }
    Ok(o)
}

fn who_of(o: &Origins, operation: &str) -> Vec<Who> {
    let Some((session, payload)) = o.begins.get(operation) else { return vec![] };
    // An agent's change carries `automation.tool`; a router tool call names its `tool`.
    let tool = payload["automation"]["tool"].as_str().or(payload["tool"].as_str()).map(String::from);
    let sessions: Vec<String> = match payload["origins"].as_array() {
        Some(a) => a.iter().filter_map(|s| s.as_str().map(String::from)).collect(),
        None => vec![session.clone()],
    };
    sessions
        .into_iter()
        .map(|s| {
            let named = payload["origin_editors"][s.as_str()].as_str().map(String::from);
            let editor = named.or_else(|| o.editors.get(&s).cloned()).or_else(|| {
                // The daemon's own transactions (sync bookkeeping, governance) name no session.
                (s.is_empty() || s == "sync" || s == "daemon").then(|| "daemon".to_string())
            });
            Who { editor, session_id: s, tool: tool.clone() }
        })
        .collect()
}

/// The audit points of `project_id` (newest first) that changed it — or, with `uuid`, that
/// changed that uuid — with what changed and who made it.
pub fn history(data: &DataDir, project_id: &str, uuid: Option<&str>) -> Result<Vec<AuditPoint>, DaemonError> {
    let repo = open_repo(data)?;
    let origins = origins(data)?;
    let mut out = vec![];
    for mut p in commits(&repo, data)? {
        let oid = git2::Oid::from_str(&p.commit).map_err(|e| git_err("parse the commit id", data, e))?;
        let c = repo.find_commit(oid).map_err(|e| git_err("read a commit", data, e))?;
        let tree = c.tree().map_err(|e| git_err("read a tree", data, e))?;
        let new = entries_at(&repo, data, &tree, project_id)?;
        let old = match c.parent(0) {
            Ok(parent) => {
                let t = parent.tree().map_err(|e| git_err("read a tree", data, e))?;
                entries_at(&repo, data, &t, project_id)?
            }
            Err(_) => BTreeMap::new(),
        };
        let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
        for k in keys {
            if uuid.is_some_and(|u| u != k) {
                continue;
            }
            // Only synced objects are restore material: an entry without state (a datablock
            // that is only registered: meshes, materials, images…) is not listed.
            let (change, e, fields) = match (synced(old.get(k)), synced(new.get(k))) {
                (None, Some(n)) => (ChangeKind::Created, n, vec![]),
                (Some(o), None) => (ChangeKind::Deleted, o, vec![]),
                (Some(o), Some(n)) if o != n => (ChangeKind::Changed, n, changed_fields(o, n)),
                _ => continue,
            };
            p.changes.push(PointChange {
                uuid: k.clone(),
                kind: e["kind"].as_str().unwrap_or("").to_string(),
                name: e["state"]["name"].as_str().or(e["name"].as_str()).unwrap_or("").to_string(),
                change,
                fields,
            });
        }
        if p.changes.is_empty() {
            continue;
        }
        let mut who = vec![];
        for op in &p.operations {
            for w in who_of(&origins, op) {
                if !who.contains(&w) {
                    who.push(w);
                }
            }
        }
        p.who = who;
        out.push(p);
    }
    Ok(out)
}

fn synced(e: Option<&Value>) -> Option<&Value> {
    e.filter(|e| e["state"].is_object())
}

/// A `create` op carrying a full state (applying it to an existing object updates it in
/// place, docs/PROTOCOL.md §6.1).
fn create_op(uuid: &str, s: &Value) -> Value {
    let mut op = json!({
        "op": "create", "uuid": uuid, "kind": s["kind"], "name": s["name"], "parent": s["parent"],
        "t": s["t"], "r": s["r"], "s": s["s"], "visible": s["visible"],
    });
    for k in ["mesh_hash", "material"] {
        if let Some(v) = s.get(k).filter(|v| !v.is_null()) {
            op[k] = v.clone();
        }
    }
    op
}

/// The ops that bring `current` (uuid → state now) back to `target` (uuid → state at the
/// audit point). `only` empty = the whole project; else just those uuids. Objects that
/// differ or are gone come back as a full `create` (parents before children); objects that
/// did not exist at the point are deleted (children before parents). Identical states
/// (equal state hash) are left alone.
pub fn plan(target: &BTreeMap<String, Value>, current: &BTreeMap<String, Value>, only: &[String]) -> Vec<Value> {
    let scope: BTreeSet<&String> =
        if only.is_empty() { target.keys().chain(current.keys()).collect() } else { only.iter().collect() };
    let mut creates: BTreeMap<&String, &Value> = BTreeMap::new();
    let mut deletes: Vec<&String> = vec![];
    for u in scope {
        match (target.get(u), current.get(u)) {
            (Some(t), Some(c)) if state_hash(t) == state_hash(c) => {}
            (Some(t), _) => {
                creates.insert(u, t);
            }
            (None, Some(_)) => deletes.push(u),
            (None, None) => {}
        }
    }
    let mut ops = vec![];
    // Parents first: emit a create once its parent is not itself still waiting.
    while !creates.is_empty() {
        let ready: Vec<&String> = creates
            .iter()
            .filter(|(_, s)| s["parent"].as_str().is_none_or(|p| !creates.keys().any(|k| k.as_str() == p)))
            .map(|(u, _)| *u)
            .collect();
        // A cycle cannot come from a committed state; if it did, emit the rest as they are.
        let ready = if ready.is_empty() { creates.keys().copied().collect() } else { ready };
        for u in ready {
            let s = creates.remove(u).expect("ready keys are pending");
            ops.push(create_op(u, s));
        }
    }
    // Children first: deeper objects (by their current parent chain) go before shallower ones.
    let depth = |u: &String| {
        let mut d = 0;
        let mut at = current.get(u);
        while let Some(p) = at.and_then(|s| s["parent"].as_str()) {
            d += 1;
            at = current.get(p);
            if d > 1000 {
                break;
            }
        }
        d
    };
    deletes.sort_by_key(|u| std::cmp::Reverse(depth(u)));
    ops.extend(deletes.into_iter().map(|u| json!({"op": "delete", "uuid": u})));
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(name: &str, parent: Option<&str>, x: f64) -> Value {
        json!({"kind":"object","name":name,"parent":parent,"visible":true,"t":[x,0.0,0.0],"r":[0.0,0.0,0.0,1.0],"s":[1.0,1.0,1.0]})
    }

    #[test]
    fn plan_restores_changed_and_gone_objects_parents_first_and_deletes_newer_ones_children_first() {
        let mut target = BTreeMap::new();
        target.insert("c-child".to_string(), st("Child", Some("a-parent"), 1.0));
        target.insert("a-parent".to_string(), st("Parent", None, 0.0));
        target.insert("b-same".to_string(), st("Same", None, 5.0));
        let mut current = BTreeMap::new();
        current.insert("b-same".to_string(), st("Same", None, 5.0));
        current.insert("c-child".to_string(), st("Moved", Some("a-parent"), 9.0));
        current.insert("n-new".to_string(), st("New", None, 0.0));
        current.insert("m-newkid".to_string(), st("NewKid", Some("n-new"), 0.0));
        let ops = plan(&target, &current, &[]);
        let names: Vec<String> =
            ops.iter().map(|o| format!("{} {}", o["op"].as_str().unwrap(), o["uuid"].as_str().unwrap())).collect();
        assert_eq!(names, ["create a-parent", "create c-child", "delete m-newkid", "delete n-new"]);
        assert_eq!(ops[1]["name"], "Child");
        assert_eq!(ops[1]["t"], json!([1.0, 0.0, 0.0]));
        // Only the uuids asked for.
        let ops = plan(&target, &current, &["c-child".to_string()]);
        assert_eq!(ops.len(), 1);
        assert_eq!(ops[0]["op"], "create");
        // Nothing differs: nothing to do.
        assert!(plan(&target, &target, &[]).is_empty());
    }

    #[test]
    fn create_op_carries_mesh_and_material_only_when_present() {
        let mut s = st("M", None, 0.0);
        assert!(create_op("u", &s).get("mesh_hash").is_none());
        s["mesh_hash"] = json!("ab");
        s["material"] = json!({"metallic": 0.5});
        let op = create_op("u", &s);
        assert_eq!(op["mesh_hash"], "ab");
        assert_eq!(op["material"]["metallic"], 0.5);
    }
}
