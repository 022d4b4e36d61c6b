//! Agent tool calls (docs/PROTOCOL.md §9): the addon registries Blender reports, the gate a
//! call passes before it is dispatched, the call's WAL transaction, and the relay of its
//! outcome to the agent.
//!
//! A call (`addon_command` from an `agent` session) runs in its own task so the agent's
//! connection stays free (pipelining, `addon_cancel`). It is dispatched to one Blender session
//! only when all of these hold: safe mode is off, the tool is not blocked, a Blender session
//! of the project lists the tool, and people are idle (else the call is *held* and the agent
//! gets `command_progress`). Blender runs the handler in one undo step and sends the changes
//! it made as `change`s carrying `automation` (they go through the sync actor like any
//! change: WAL, gate, verification). The call itself becomes one WAL transaction written when
//! its outcome is known: BEGIN (agent session, tool) → one `tool_effect` STEP per uuid it
//! changed → COMMIT → FINAL (+ audit), or BEGIN → ROLLBACK when the handler failed and was
//! undone. Refusals before running (validation, safe mode, blocked, offline, held timeout)
//! write nothing.
//!
//! Invariant: nothing here mutates the registry or the scene; a call's effects reach the other
//! editors only through the sync actor.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use tokio::sync::{oneshot, Notify};
use tracing::{info, warn};
use vibesync_engine::governance::IdleTracker;
use vibesync_protocol::addon::{
    AddonCancel, AddonCommand, AddonRegistered, AddonUnregistered, CallErrorCode, CallState, CommandResponse,
    CommandResult, CommandStatus, RegistryUpdated, SceneQuery,
};
use vibesync_protocol::{ClientKind, ErrorCode, Frame, MessageType, Outbound};
use vibesync_wal::{Outcome, Phase};

use crate::host::{Host, SessionInfo};
use crate::txn::Txn;

/// What one Blender session reported.
#[derive(Default, Clone)]
struct EditorRegistry {
    /// addon_id → its entry (`addon_id`, `name`, `version`, `tools`, …) as Blender sent it.
    available: BTreeMap<String, Value>,
    rejected: Vec<Value>,
    withheld: Vec<Value>,
    /// Order of connection (higher = more recent): picks the session a call goes to.
    joined: u64,
}

#[derive(Default)]
struct Project {
    editors: BTreeMap<String, EditorRegistry>,
    idle: IdleTracker,
}

struct CallCtl {
    cancel: Arc<Notify>,
}

#[derive(Default)]
struct State {
    projects: HashMap<String, Project>,
    /// operation_id → where Blender's answer goes.
    dispatched: HashMap<String, (String, oneshot::Sender<CommandResponse>)>,
    /// (agent session, agent request_id) → control of a call not finished yet.
    calls: HashMap<(String, String), CallCtl>,
    joins: u64,
}

impl State {
    /// The registry an editor session reported, created on first use.
    fn editor(&mut self, sess: &SessionInfo) -> &mut EditorRegistry {
        self.projects.entry(sess.project_id.clone()).or_default().editors.entry(sess.session_id.clone()).or_default()
    }
}

/// The daemon's router for agent tool calls.
pub struct Router {
    state: Mutex<State>,
    epoch: Instant,
}

impl Default for Router {
    fn default() -> Self {
        Router { state: Mutex::new(State::default()), epoch: Instant::now() }
    }
}

fn refused(req: &AddonCommand, op: &str, result: CommandResult) -> Outbound {
    Outbound::CommandResponse {
        request_id: req.request_id.clone(),
        operation_id: op.to_string(),
        addon_id: req.addon_id.clone(),
        command: req.command.clone(),
        result,
        uuids: vec![],
        seq: 0,
    }
}

fn only_from(sess: &SessionInfo, editor: ClientKind, ty: MessageType, request_id: Option<String>) -> Option<Frame> {
    (!sess.is(editor)).then(|| {
        Outbound::error(
            ErrorCode::BadMessage,
            format!("field `type`: `{ty}` is accepted only from `{editor}` sessions (docs/PROTOCOL.md §9)"),
            request_id,
        )
        .to_frame()
    })
}

impl Router {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    // ------------------------------------------------------------------ sessions
    /// A session got its `welcome`: agents are told the project's tools at once.
    pub fn joined<H: Host>(&self, daemon: &Arc<H>, info: &SessionInfo) {
        if info.is(ClientKind::Blender) {
            let mut st = self.state.lock().unwrap();
            st.joins += 1;
            let joined = st.joins;
            st.projects
                .entry(info.project_id.clone())
                .or_default()
                .editors
                .insert(info.session_id.clone(), EditorRegistry { joined, ..Default::default() });
        } else if info.is(ClientKind::Agent) {
            // An agent starts from an empty registry; it is told as soon as there is one.
            if !self.has_registry(&info.project_id) {
                return;
            }
            let frame = self.registry_frame(&info.project_id);
            let (daemon, sid) = (daemon.clone(), info.session_id.clone());
            tokio::spawn(async move {
                daemon.send_frames(&sid, vec![frame]).await;
            });
        }
    }

    /// A session closed: its addons disappear; calls waiting on it end.
    pub fn left<H: Host>(&self, daemon: &Arc<H>, info: &SessionInfo) {
        let changed = {
            let mut st = self.state.lock().unwrap();
            let sid = &info.session_id;
            st.dispatched.retain(|_, (s, _)| s != sid); // dropping the sender ends the wait
            st.calls.retain(|(s, _), _| s != sid);
            let p = st.projects.entry(info.project_id.clone()).or_default();
            p.idle.left(sid);
            p.editors.remove(sid).is_some_and(|e| !e.available.is_empty() || !e.rejected.is_empty())
        };
        if changed {
            self.push_registry(daemon, &info.project_id);
        }
    }

    pub fn user_activity(&self, info: &SessionInfo, active: bool) {
        let now = self.now_ms();
        let mut st = self.state.lock().unwrap();
        st.projects.entry(info.project_id.clone()).or_default().idle.activity(&info.session_id, active, now);
    }

    // ------------------------------------------------------------------ registries
    pub fn registry_updated<H: Host>(&self, daemon: &Arc<H>, sess: &SessionInfo, r: RegistryUpdated) -> Vec<Frame> {
        if let Some(f) = only_from(sess, ClientKind::Blender, MessageType::RegistryUpdated, r.request_id.clone()) {
            return vec![f];
        }
        {
            let mut st = self.state.lock().unwrap();
            let e = st.editor(sess);
            e.available = r
                .available_addons
                .into_iter()
                .filter_map(|a| a.get("addon_id").and_then(Value::as_str).map(str::to_string).map(|id| (id, a.clone())))
                .collect();
            e.rejected = r.rejected;
            e.withheld = r.withheld;
        }
        info!(project_id = %sess.project_id, "addon registry updated by Blender");
        self.push_registry(daemon, &sess.project_id);
        vec![]
    }

    pub fn addon_registered<H: Host>(&self, daemon: &Arc<H>, sess: &SessionInfo, r: AddonRegistered) -> Vec<Frame> {
        if let Some(f) = only_from(sess, ClientKind::Blender, MessageType::AddonRegistered, r.request_id.clone()) {
            return vec![f];
        }
        {
            let mut st = self.state.lock().unwrap();
            let e = st.editor(sess);
            let mut entry = r.manifest;
            if let Value::Object(m) = &mut entry {
                m.insert("addon_id".into(), json!(r.addon_id));
            }
            e.available.insert(r.addon_id.clone(), entry);
        }
        info!(project_id = %sess.project_id, addon_id = %r.addon_id, "addon registered");
        self.push_registry(daemon, &sess.project_id);
        vec![]
    }

    pub fn addon_unregistered<H: Host>(&self, daemon: &Arc<H>, sess: &SessionInfo, r: AddonUnregistered) -> Vec<Frame> {
        if let Some(f) = only_from(sess, ClientKind::Blender, MessageType::AddonUnregistered, r.request_id.clone()) {
            return vec![f];
        }
        {
            let mut st = self.state.lock().unwrap();
            if let Some(e) = st.projects.get_mut(&sess.project_id).and_then(|p| p.editors.get_mut(&sess.session_id)) {
                e.available.remove(&r.addon_id);
            }
        }
        info!(project_id = %sess.project_id, addon_id = %r.addon_id, "addon unregistered");
        self.push_registry(daemon, &sess.project_id);
        vec![]
    }

    fn has_registry(&self, project_id: &str) -> bool {
        let st = self.state.lock().unwrap();
        st.projects.get(project_id).is_some_and(|p| {
            p.editors.values().any(|e| !e.available.is_empty() || !e.rejected.is_empty() || !e.withheld.is_empty())
        })
    }

    /// The project's merged registry: one entry per addon (from the most recently connected
    /// Blender session that lists it), with the `session_id` that serves it.
    fn registry_frame(&self, project_id: &str) -> Frame {
        let st = self.state.lock().unwrap();
        let mut addons: BTreeMap<String, (u64, Value)> = BTreeMap::new();
        let (mut rejected, mut withheld) = (vec![], vec![]);
        if let Some(p) = st.projects.get(project_id) {
            for (sid, e) in &p.editors {
                for (id, a) in &e.available {
                    if addons.get(id).is_none_or(|(j, _)| *j < e.joined) {
                        let mut a = a.clone();
                        if let Value::Object(m) = &mut a {
                            m.insert("session_id".into(), json!(sid));
                        }
                        addons.insert(id.clone(), (e.joined, a));
                    }
                }
                rejected.extend(e.rejected.iter().cloned());
                withheld.extend(e.withheld.iter().cloned());
            }
        }
        Outbound::RegistryUpdated {
            project_id: project_id.to_string(),
            available_addons: addons.into_values().map(|(_, a)| a).collect(),
            rejected,
            withheld,
        }
        .to_frame()
    }

    fn push_registry<H: Host>(&self, daemon: &Arc<H>, project_id: &str) {
        let frame = self.registry_frame(project_id);
        let agents: Vec<String> = daemon
            .sessions_of(project_id)
            .into_iter()
            .filter(|s| s.editor == ClientKind::Agent)
            .map(|s| s.session_id)
            .collect();
        let daemon = daemon.clone();
        tokio::spawn(async move {
            for sid in agents {
                daemon.send_frames(&sid, vec![frame.clone()]).await;
            }
        });
    }

    /// The Blender session a call for `addon_id.command` goes to: the most recently connected
    /// one of the project whose registry lists the tool. `Err` says why there is none.
    fn pick_editor(&self, project_id: &str, addon_id: &str, command: &str) -> Result<String, CommandResult> {
        let st = self.state.lock().unwrap();
        let Some(p) = st.projects.get(project_id).filter(|p| !p.editors.is_empty()) else {
            return Err(CommandResult::refused(
                CallErrorCode::EditorOffline,
                format!("no Blender session is connected to project `{project_id}`; open Blender with the VibeSync addon connected to this project"),
            ));
        };
        let mut best: Option<(u64, &String)> = None;
        for (sid, e) in &p.editors {
            let has = e.available.get(addon_id).is_some_and(|a| {
                a.get("tools")
                    .and_then(Value::as_array)
                    .is_some_and(|ts| ts.iter().any(|t| t.get("name").and_then(Value::as_str) == Some(command)))
            });
            if has && best.is_none_or(|(j, _)| j < e.joined) {
                best = Some((e.joined, sid));
            }
        }
        best.map(|(_, s)| s.clone()).ok_or_else(|| {
            CommandResult::refused(
                CallErrorCode::UnknownTool,
                format!("no connected Blender session offers `{addon_id}.{command}`: enable the addon and allow it for agents in the VibeSync preferences"),
            )
        })
    }

    // ------------------------------------------------------------------ calls
    /// `addon_command` from an agent: answered later by `command_response`.
    pub fn call<H: Host>(self: &Arc<Self>, daemon: &Arc<H>, sess: &SessionInfo, req: AddonCommand) -> Vec<Frame> {
        if let Some(f) = only_from(sess, ClientKind::Agent, MessageType::AddonCommand, Some(req.request_id.clone())) {
            return vec![f];
        }
        let key = (sess.session_id.clone(), req.request_id.clone());
        let cancel = Arc::new(Notify::new());
        {
            let mut st = self.state.lock().unwrap();
            if st.calls.contains_key(&key) {
                return vec![Outbound::error(
                    ErrorCode::BadMessage,
                    format!(
                        "field `request_id`: a call with request_id `{}` is still running; use a fresh id",
                        req.request_id
                    ),
                    Some(req.request_id),
                )
                .to_frame()];
            }
            st.calls.insert(key.clone(), CallCtl { cancel: cancel.clone() });
        }
        let (router, daemon, sess) = (self.clone(), daemon.clone(), sess.clone());
        tokio::spawn(async move {
            let reply = router.run_call(&daemon, &sess, &req, cancel).await;
            router.state.lock().unwrap().calls.remove(&key);
            daemon.send_frames(&sess.session_id, vec![reply.to_frame()]).await;
        });
        vec![]
    }

    /// `addon_cancel`: a held call ends with CANCELLED; a running handler is not interrupted
    /// (its time budget bounds it).
    pub fn cancel(&self, sess: &SessionInfo, c: AddonCancel) -> Vec<Frame> {
        if let Some(f) = only_from(sess, ClientKind::Agent, MessageType::AddonCancel, Some(c.request_id.clone())) {
            return vec![f];
        }
        if let Some(ctl) = self.state.lock().unwrap().calls.get(&(sess.session_id.clone(), c.request_id)) {
            ctl.cancel.notify_one();
        }
        vec![]
    }

    /// `command_response` from Blender.
    pub fn response(&self, sess: &SessionInfo, r: CommandResponse) -> Vec<Frame> {
        if let Some(f) = only_from(sess, ClientKind::Blender, MessageType::CommandResponse, Some(r.request_id.clone()))
        {
            return vec![f];
        }
        let waiting = {
            let mut st = self.state.lock().unwrap();
            match st.dispatched.get(&r.request_id) {
                Some((s, _)) if s == &sess.session_id => st.dispatched.remove(&r.request_id),
                _ => None,
            }
        };
        match waiting {
            Some((_, tx)) => {
                let _ = tx.send(r);
            }
            None => warn!(
                operation_id = %r.request_id,
                status = ?r.result.status,
                uuids = ?r.uuids,
                "command_response for no waiting call (answered after its timeout); ignored"
            ),
        }
        vec![]
    }

    async fn run_call<H: Host>(
        &self,
        daemon: &Arc<H>,
        sess: &SessionInfo,
        req: &AddonCommand,
        cancel: Arc<Notify>,
    ) -> Outbound {
        let cfg = &daemon.config().agents;
        let tool = format!("{}.{}", req.addon_id, req.command);
        let operation_id = uuid::Uuid::new_v4().to_string();
        let started = Instant::now();
        let timeout = Duration::from_millis(req.timeout_ms.unwrap_or(cfg.call_timeout_ms).max(1));
        let progress_every = Duration::from_millis(cfg.progress_interval_ms.max(50));
        let project = sess.project_id.clone();
        let span = tracing::info_span!("tool_call", operation_id = %operation_id, tool = %tool, agent_session = %sess.session_id);
        let _enter = span.enter();
        loop {
            if daemon.safe_mode() {
                return refused(
                    req,
                    &operation_id,
                    CommandResult::refused(
                        CallErrorCode::SafeMode,
                        "the daemon is in safe mode: automation is off until a person runs `vibesync safe-mode clear`",
                    ),
                );
            }
            let failures = daemon.stores().governance.lock().unwrap().tool_failures(&project, &tool);
            if failures >= cfg.tool_failures.max(1) {
                return refused(
                    req,
                    &operation_id,
                    CommandResult::refused(
                        CallErrorCode::Blocked,
                        format!("`{tool}` failed {failures} times; it is refused until a person runs `vibesync safe-mode clear` (other tools still work)"),
                    ),
                );
            }
            let editor = match self.pick_editor(&project, &req.addon_id, &req.command) {
                Ok(e) => e,
                Err(r) => return refused(req, &operation_id, r),
            };
            // People first: a call waits while anyone edits the project.
            let held_until = {
                let st = self.state.lock().unwrap();
                st.projects
                    .get(&project)
                    .and_then(|p| p.idle.automation_allowed_at(self.now_ms(), daemon.config().governance.user_idle_ms))
            };
            if let Some(at) = held_until {
                let wait_ms = at.saturating_sub(self.now_ms()).max(1);
                let reason = format!("a person is editing; the call runs {wait_ms} ms after they stop");
                if let Some(r) = self
                    .wait(
                        daemon,
                        sess,
                        req,
                        &operation_id,
                        CallState::Held,
                        &reason,
                        started,
                        timeout,
                        progress_every,
                        &cancel,
                    )
                    .await
                {
                    return r;
                }
                continue;
            }
            // Dispatch.
            let (tx, rx) = oneshot::channel();
            self.state.lock().unwrap().dispatched.insert(operation_id.clone(), (editor.clone(), tx));
            let remaining = timeout.saturating_sub(started.elapsed());
            let budget = cfg.handler_budget_ms.min(remaining.as_millis() as u64).max(1);
            let frame = Outbound::AddonCommand {
                request_id: operation_id.clone(),
                operation_id: operation_id.clone(),
                addon_id: req.addon_id.clone(),
                command: req.command.clone(),
                params: req.params.clone(),
                username: sess.client_id.clone(),
                agent_session: sess.session_id.clone(),
                timeout_ms: budget,
            }
            .to_frame();
            info!(editor_session = %editor, "dispatching tool call to Blender");
            if !daemon.send_frames(&editor, vec![frame]).await {
                self.state.lock().unwrap().dispatched.remove(&operation_id);
                return refused(
                    req,
                    &operation_id,
                    CommandResult::refused(
                        CallErrorCode::EditorOffline,
                        "the Blender session went away before the call reached it",
                    ),
                );
            }
            // Blender's own budget ends the handler; allow the transport some slack on top.
            let answer = tokio::time::timeout(remaining + Duration::from_secs(2), rx).await;
            let resp = match answer {
                Ok(Ok(r)) => r,
                Ok(Err(_)) => {
                    return refused(
                        req,
                        &operation_id,
                        CommandResult::refused(
                            CallErrorCode::EditorOffline,
                            "Blender disconnected during the call; whatever it sent before is in the sync log",
                        ),
                    )
                }
                Err(_) => {
                    self.state.lock().unwrap().dispatched.remove(&operation_id);
                    let result = CommandResult::refused(
                        CallErrorCode::ResponseTimeout,
                        format!("Blender did not answer within {} ms", timeout.as_millis()),
                    );
                    return self.finish(daemon, sess, req, &tool, &operation_id, result, vec![]).await;
                }
            };
            if resp.result.error_code() == Some(CallErrorCode::EditorBusy) {
                let reason = format!("Blender is busy: {}", resp.result.message);
                if let Some(r) = self
                    .wait(
                        daemon,
                        sess,
                        req,
                        &operation_id,
                        CallState::Busy,
                        &reason,
                        started,
                        timeout,
                        progress_every,
                        &cancel,
                    )
                    .await
                {
                    return r;
                }
                continue;
            }
            return self.finish(daemon, sess, req, &tool, &operation_id, resp.result, resp.uuids).await;
        }
    }

    /// Wait one progress interval (or until cancelled / timed out), telling the agent why.
    #[allow(clippy::too_many_arguments)]
    async fn wait<H: Host>(
        &self,
        daemon: &Arc<H>,
        sess: &SessionInfo,
        req: &AddonCommand,
        operation_id: &str,
        state: CallState,
        reason: &str,
        started: Instant,
        timeout: Duration,
        every: Duration,
        cancel: &Notify,
    ) -> Option<Outbound> {
        let elapsed = started.elapsed();
        if elapsed >= timeout {
            let code = CallErrorCode::HeldTimeout;
            return Some(refused(
                req,
                operation_id,
                CommandResult::refused(code, format!("held for {} ms ({reason}); nothing ran", elapsed.as_millis())),
            ));
        }
        let progress = Outbound::CommandProgress {
            request_id: req.request_id.clone(),
            state,
            reason: reason.to_string(),
            elapsed_ms: elapsed.as_millis() as u64,
        };
        daemon.send_frames(&sess.session_id, vec![progress.to_frame()]).await;
        tokio::select! {
            _ = tokio::time::sleep(every.min(timeout - elapsed)) => None,
            _ = cancel.notified() => Some(refused(
                req,
                operation_id,
                CommandResult::refused(CallErrorCode::Cancelled, "cancelled by the agent before it ran; nothing changed"),
            )),
        }
    }

    /// The call ran (or Blender never answered): write its WAL transaction and answer.
    #[allow(clippy::too_many_arguments)]
    async fn finish<H: Host>(
        &self,
        daemon: &Arc<H>,
        sess: &SessionInfo,
        req: &AddonCommand,
        tool: &str,
        operation_id: &str,
        result: CommandResult,
        uuids: Vec<String>,
    ) -> Outbound {
        let code = result.error_code();
        let ran_ok = result.status != CommandStatus::Error;
        // Refusals by Blender's router (validation) ran nothing: no transaction.
        let ran = ran_ok || !code.is_some_and(|c| c.is_refusal());
        if !ran {
            info!(error_code = ?result.error_code, field = ?result.field, "tool call refused by Blender's router");
            return refused(req, operation_id, result);
        }
        let uuids: Vec<String> =
            uuids.into_iter().filter(|u| vibesync_protocol::validate::uuid(u).is_ok()).collect::<Vec<_>>();
        let txn = Txn { session_id: &sess.session_id, operation_id, project_id: &sess.project_id };
        let begin = json!({
            "op": "tool_call", "tool": tool, "agent_session": sess.session_id,
            "addon_id": req.addon_id, "command": req.command, "params": Value::Object(req.params.clone()),
            "request_id": req.request_id,
        });
        let summary = json!({"op": "tool_call", "tool": tool, "status": result.status, "message": result.message});
        let drafts = if ran_ok {
            let steps: Vec<Value> =
                uuids.iter().map(|u| json!({"op": "tool_effect", "uuid": u, "tool": tool})).collect();
            txn.drafts(&uuids, begin, steps, summary)
        } else {
            let failure_code = match code {
                Some(c) if c.counts_as_tool_failure() => c,
                _ => CallErrorCode::HandlerFailed,
            };
            let mut rb = txn.draft(Phase::Rollback, uuids.clone(), Outcome::Error, summary);
            rb.error_code = Some(failure_code.as_str().to_string());
            vec![txn.draft(Phase::Begin, uuids.clone(), Outcome::Pending, begin), rb]
        };
        let records = match daemon.stores().wal.append(drafts).await {
            Ok(r) => r,
            Err(e) => {
                daemon.storage_failure_notice(operation_id, &e.to_string());
                return refused(
                    req,
                    operation_id,
                    CommandResult::refused(
                        CallErrorCode::StorageFailed,
                        format!("the WAL could not record the call: {e}"),
                    ),
                );
            }
        };
        {
            let mut gov = daemon.stores().governance.lock().unwrap();
            for r in &records {
                gov.observe(&crate::stores::observed(r));
            }
        }
        let seq = records.last().map(|r| r.seq).unwrap_or(0);
        if ran_ok {
            info!(uuids = ?uuids, seq, "tool call committed");
            daemon.finalize_later(
                sess.session_id.clone(),
                sess.project_id.clone(),
                operation_id.to_string(),
                uuids.clone(),
            );
        } else {
            // Counted by the governance index from the ROLLBACK just written (so a restart
            // rebuilds it from the WAL).
            let n = daemon.stores().governance.lock().unwrap().tool_failures(&sess.project_id, tool);
            warn!(error_code = ?result.error_code, failures = n, seq, "tool call failed and was undone in Blender: ROLLBACK");
        }
        Outbound::CommandResponse {
            request_id: req.request_id.clone(),
            operation_id: operation_id.to_string(),
            addon_id: req.addon_id.clone(),
            command: req.command.clone(),
            result,
            uuids,
            seq,
        }
    }

    // ------------------------------------------------------------------ queries
    /// `scene_query`: the authoritative (committed) state of the project's live objects.
    pub fn scene<H: Host>(&self, daemon: &H, sess: &SessionInfo, q: SceneQuery) -> Frame {
        if let Some(f) = only_from(sess, ClientKind::Agent, MessageType::SceneQuery, Some(q.request_id.clone())) {
            return f;
        }
        // A malformed uuid is refused, never answered as "no such object" (docs/PROTOCOL.md §9.3).
        if let Some(Err(e)) = q.uuid.as_deref().map(vibesync_protocol::validate::uuid) {
            return Outbound::error(
                ErrorCode::BadMessage,
                format!("field `uuid`: {}; or leave `uuid` out to list every object", e.message),
                Some(q.request_id),
            )
            .to_frame();
        }
        let entries = match daemon.stores().registry.live_entries(Some(&sess.project_id)) {
            Ok(e) => e,
            Err(e) => {
                return daemon.storage_failure_frame(&q.request_id, "scene_query", format!("registry read failed: {e}"))
            }
        };
        let objects: Vec<Value> = entries
            .into_iter()
            .filter(|e| q.uuid.as_ref().is_none_or(|u| u == &e.uuid))
            .filter(|e| q.name.as_ref().is_none_or(|n| n == &e.name))
            .map(|e| {
                let mut m = Map::new();
                m.insert("uuid".into(), json!(e.uuid));
                m.insert("kind".into(), json!(e.kind));
                m.insert("name".into(), json!(e.name));
                m.insert("status".into(), json!(e.status));
                if let Some(Value::Object(s)) = e.state {
                    for (k, v) in s {
                        m.entry(k).or_insert(v);
                    }
                }
                Value::Object(m)
            })
            .collect();
        Outbound::Scene { request_id: q.request_id, seq: daemon.last_seq(), objects }.to_frame()
    }
}
