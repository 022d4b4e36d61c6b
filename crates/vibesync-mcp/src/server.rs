//! The MCP side (`rmcp` over stdio): `initialize` / `tools/list` answered from what is known
//! now (never waiting for the daemon), `tools/call` validated against the tool's schema and
//! routed to the daemon, progress while a call is held, `list_changed` when the registry
//! changes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation, ListToolsResult,
    PaginatedRequestParams, ProgressNotificationParam, ProgressToken, ServerCapabilities, ServerConfig, Tool,
    ToolAnnotations,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::{ErrorData, Peer, RoleServer, ServerHandler};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use vibesync_geonodes::tools::GeonodesTool;
use vibesync_protocol::addon::CallErrorCode;

use crate::link::{Link, LinkError};
use crate::tools::{self, Builtin};

/// How long a built-in change may wait for its batch result (held while people edit, then
/// verified by the editors).
const BUILTIN_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct VibeSyncMcp {
    link: Link,
    peer: Arc<Mutex<Option<Peer<RoleServer>>>>,
}

fn object(v: Value) -> Arc<Map<String, Value>> {
    match v {
        Value::Object(m) => Arc::new(m),
        _ => Arc::new(Map::new()),
    }
}

/// A tool result: text (the JSON) plus the same as structured content.
fn done(ok: bool, body: Value) -> CallToolResult {
    let text = ContentBlock::text(body.to_string());
    let mut r = if ok { CallToolResult::success(vec![text]) } else { CallToolResult::error(vec![text]) };
    r.structured_content = Some(body);
    r
}

fn refusal(code: &str, field: Option<&str>, message: impl Into<String>) -> CallToolResult {
    let mut body = json!({"error_code": code, "message": message.into()});
    if let Some(f) = field {
        body["field"] = json!(f);
    }
    done(false, body)
}

fn offline(e: &LinkError) -> CallToolResult {
    refusal(CallErrorCode::EditorOffline.as_str(), None, e.to_string())
}

impl VibeSyncMcp {
    pub fn new(link: Link) -> VibeSyncMcp {
        VibeSyncMcp { link, peer: Arc::new(Mutex::new(None)) }
    }

    /// Every tool offered now: built-ins, `addon.call`, and the registry's addon tools.
    pub fn tools(&self) -> Vec<Tool> {
        let mut out: Vec<Tool> = Builtin::ALL
            .iter()
            .map(|b| {
                Tool::new(b.name(), b.description(), object(b.input_schema())).with_annotations(
                    ToolAnnotations::new().read_only(b.read_only()).destructive(b.destructive()).open_world(false),
                )
            })
            .collect();
        // The Geometry Nodes tools (docs/GEONODES.md): three answer here, build and describe
        // go to the Blender add-on `geonodes` (build validated first).
        for g in GeonodesTool::ALL {
            out.push(Tool::new(g.name(), g.description(), object(g.input_schema())).with_annotations(
                ToolAnnotations::new().read_only(g.read_only()).destructive(g.destructive()).open_world(false),
            ));
        }
        out.push(
            Tool::new(tools::ADDON_CALL, tools::ADDON_CALL_DESCRIPTION, object(tools::addon_call_schema()))
                .with_annotations(ToolAnnotations::new().read_only(false).destructive(true).open_world(false)),
        );
        if let Some(reg) = self.link.registry() {
            for t in tools::registry_tools(&reg).into_values() {
                if GeonodesTool::from_name(&t.name).is_some() {
                    continue; // offered above, with validation before Blender
                }
                out.push(Tool::new(t.name, t.description, object(t.input_schema)).with_annotations(
                    ToolAnnotations::new().read_only(t.read_only).destructive(t.destructive).open_world(false),
                ));
            }
        }
        out
    }

    /// Send `notifications/tools/list_changed` whenever the set of addon tools changes.
    pub fn spawn_list_changed(&self) {
        let mut rx = self.link.watch_registry();
        let me = self.clone();
        tokio::spawn(async move {
            let fingerprint = |r: &Option<Value>| -> Vec<(String, Value)> {
                r.as_ref()
                    .map(|r| tools::registry_tools(r).into_iter().map(|(k, t)| (k, t.input_schema)).collect())
                    .unwrap_or_default()
            };
            let mut last = fingerprint(&rx.borrow());
            while rx.changed().await.is_ok() {
                let now = fingerprint(&rx.borrow_and_update());
                if now == last {
                    continue;
                }
                last = now;
                let peer = me.peer.lock().unwrap().clone();
                if let Some(peer) = peer {
                    info!(tools = last.len(), "addon tools changed: notifying the client");
                    if let Err(e) = peer.notify_tool_list_changed().await {
                        warn!("could not send tools/list_changed: {e}");
                    }
                }
            }
        });
    }

    async fn progress(&self, token: &Option<ProgressToken>, n: f64, message: String) {
        let Some(token) = token else { return };
        let peer = self.peer.lock().unwrap().clone();
        if let Some(peer) = peer {
            let _ = peer.notify_progress(ProgressNotificationParam::new(token.clone(), n).with_message(message)).await;
        }
    }

    async fn call_addon(
        &self,
        addon_id: &str,
        tool: &str,
        args: Value,
        token: Option<ProgressToken>,
        cancel: CancellationToken,
    ) -> CallToolResult {
        let (ptx, mut prx) = mpsc::unbounded_channel();
        let msg = json!({"type": "addon_command", "addon_id": addon_id, "command": tool, "params": args});
        let (rid, mut rx) = match self.link.request(msg, Some(ptx)) {
            Ok(x) => x,
            Err(e) => return offline(&e),
        };
        let mut n = 0.0;
        let mut cancelled = false;
        let reply = loop {
            tokio::select! {
                r = &mut rx => break r,
                Some(p) = prx.recv() => {
                    n += 1.0;
                    let text = format!("{}: {}", p["state"].as_str().unwrap_or("waiting"), p["reason"].as_str().unwrap_or(""));
                    self.progress(&token, n, text).await;
                }
                _ = cancel.cancelled(), if !cancelled => {
                    cancelled = true;
                    let _ = self.link.send(&json!({"type": "addon_cancel", "request_id": rid}));
                }
            }
        };
        let Ok(reply) = reply else {
            return refusal(
                CallErrorCode::EditorOffline.as_str(),
                None,
                "the daemon connection closed during the call",
            );
        };
        if reply["type"] == "error" {
            return refusal(
                reply["code"].as_str().unwrap_or("INTERNAL"),
                None,
                reply["message"].as_str().unwrap_or(""),
            );
        }
        let result = &reply["result"];
        let ok = result["status"] != "error";
        let mut body = json!({
            "status": result["status"], "message": result["message"], "operation_id": reply["operation_id"],
            "uuids": reply["uuids"], "seq": reply["seq"],
        });
        for k in ["data", "error_code", "field"] {
            if let Some(v) = result.get(k) {
                body[k] = v.clone();
            }
        }
        done(ok, body)
    }

    async fn call_builtin(&self, b: Builtin, args: Value, token: Option<ProgressToken>) -> CallToolResult {
        let s = |k: &str| args.get(k).and_then(Value::as_str).map(str::to_string);
        if b == Builtin::SceneQuery {
            let mut q = json!({"type": "scene_query"});
            for k in ["uuid", "name"] {
                if let Some(v) = s(k) {
                    q[k] = json!(v);
                }
            }
            return match self.ask(q).await {
                Ok(r) if r["type"] == "scene" => done(true, json!({"seq": r["seq"], "objects": r["objects"]})),
                Ok(r) => refusal(r["code"].as_str().unwrap_or("INTERNAL"), None, r["message"].as_str().unwrap_or("")),
                Err(e) => offline(&e),
            };
        }
        let uuid = if b == Builtin::Create { uuid::Uuid::new_v4().to_string() } else { s("uuid").unwrap_or_default() };
        let op = match b {
            Builtin::Create => json!({
                "op": "create", "uuid": uuid, "kind": "object", "name": s("name").unwrap_or_default(),
                "parent": args.get("parent").cloned().unwrap_or(Value::Null),
                "t": args.get("location").cloned().unwrap_or(json!([0.0, 0.0, 0.0])),
                "r": args.get("rotation").cloned().unwrap_or(json!([0.0, 0.0, 0.0, 1.0])),
                "s": args.get("scale").cloned().unwrap_or(json!([1.0, 1.0, 1.0])),
                "visible": args.get("visible").cloned().unwrap_or(json!(true)),
            }),
            Builtin::Delete => json!({"op": "delete", "uuid": uuid}),
            Builtin::Rename => json!({"op": "rename", "uuid": uuid, "name": s("name").unwrap_or_default()}),
            Builtin::Reparent => {
                json!({"op": "reparent", "uuid": uuid, "parent": args.get("parent").cloned().unwrap_or(Value::Null)})
            }
            Builtin::SetMaterial => {
                // Omitted parts keep the object's current value (as `object.transform`); an
                // object without a material takes the defaults (0, 0.5, black).
                let cur = match self.ask(json!({"type": "scene_query", "uuid": uuid})).await {
                    Ok(r) => r["objects"].get(0).cloned(),
                    Err(e) => return offline(&e),
                };
                let Some(cur) = cur else {
                    return refusal("NOT_FOUND", Some("/uuid"), format!("no synced object {uuid}; see scene.query"));
                };
                let part = |k: &str, default: Value| {
                    args.get(k).cloned().or_else(|| cur["material"].get(k).cloned()).unwrap_or(default)
                };
                json!({"op": "material", "uuid": uuid, "material": {
                    "base_color": args["base_color"],
                    "metallic": part("metallic", json!(0.0)),
                    "roughness": part("roughness", json!(0.5)),
                    "emission": part("emission", json!([0.0, 0.0, 0.0])),
                }})
            }
            Builtin::Transform => {
                // A transform carries t, r and s: omitted parts keep their current value.
                let cur = match self.ask(json!({"type": "scene_query", "uuid": uuid})).await {
                    Ok(r) => r["objects"].get(0).cloned(),
                    Err(e) => return offline(&e),
                };
                let Some(cur) = cur else {
                    return refusal("NOT_FOUND", Some("/uuid"), format!("no synced object {uuid}; see scene.query"));
                };
                json!({"op": "transform", "uuid": uuid,
                    "t": args.get("location").cloned().unwrap_or(cur["t"].clone()),
                    "r": args.get("rotation").cloned().unwrap_or(cur["r"].clone()),
                    "s": args.get("scale").cloned().unwrap_or(cur["s"].clone())})
            }
            Builtin::SceneQuery => unreachable!("answered above"),
        };
        if b == Builtin::Create {
            // Like an editor, the agent registers the identity it creates before its state.
            let name = s("name").unwrap_or_default();
            let item = json!({"uuid": uuid, "kind": "object", "name": name, "editor_ref": format!("agent:{name}")});
            match self.ask(json!({"type": "register", "items": [item]})).await {
                Ok(a) if a["type"] == "ack" && a["results"][0]["status"] == "registered" => {}
                Ok(a) if a["type"] == "ack" => {
                    let r = &a["results"][0];
                    return refusal(
                        r["error_code"].as_str().unwrap_or("INVALID_FIELD"),
                        None,
                        r["message"].as_str().unwrap_or("register refused"),
                    );
                }
                Ok(a) => {
                    return refusal(a["code"].as_str().unwrap_or("INTERNAL"), None, a["message"].as_str().unwrap_or(""))
                }
                Err(e) => return offline(&e),
            }
        }
        let batch = self.link.wait_batch(vec![uuid.clone()]);
        let ack = match self.ask(json!({"type": "change", "base_seq": self.link.seq(), "changes": [op]})).await {
            Ok(a) => a,
            Err(e) => return offline(&e),
        };
        if ack["type"] == "error" {
            return refusal(ack["code"].as_str().unwrap_or("INTERNAL"), None, ack["message"].as_str().unwrap_or(""));
        }
        let item = &ack["results"][0];
        match item["status"].as_str() {
            Some("error") => {
                return refusal(
                    item["error_code"].as_str().unwrap_or("INVALID_FIELD"),
                    None,
                    item["message"].as_str().unwrap_or(""),
                )
            }
            Some("held") => {
                self.progress(&token, 1.0, "held: a person is editing; the change runs once they stop".into()).await;
            }
            _ => {}
        }
        match tokio::time::timeout(BUILTIN_TIMEOUT, batch).await {
            // The daemon closed the connection first and said why (`SYNC_RESTARTED`: the
            // change was neither taken nor refused; call again).
            Ok(Ok(r)) if r["type"] == "error" => {
                refusal(r["code"].as_str().unwrap_or("INTERNAL"), None, r["message"].as_str().unwrap_or(""))
            }
            Ok(Ok(r)) => match r["outcome"].as_str() {
                // A held change that did not run (a person changed the object meanwhile, or
                // safe mode began): `dropped` with the reason (docs/PROTOCOL.md §6.7).
                Some("dropped") if r["reason"].is_string() => {
                    let reason = r["reason"].as_str().unwrap_or("");
                    let code = if reason.starts_with("safe mode") { "SAFE_MODE" } else { "STALE" };
                    refusal(code, None, format!("the change did not run: {reason}"))
                }
                Some("committed") | Some("dropped") => done(
                    true,
                    json!({"status": "success", "uuid": uuid, "outcome": r["outcome"], "seq": r["seq"], "tool": b.name()}),
                ),
                _ => refusal(
                    r["error_code"].as_str().unwrap_or("ROLLED_BACK"),
                    None,
                    format!(
                        "the change was rolled back everywhere ({})",
                        r["reason"].as_str().unwrap_or("verification failed")
                    ),
                ),
            },
            Ok(Err(_)) => refusal(CallErrorCode::EditorOffline.as_str(), None, "the daemon connection closed"),
            Err(_) => refusal(
                CallErrorCode::HeldTimeout.as_str(),
                None,
                format!("no result within {} s; the change is still queued", BUILTIN_TIMEOUT.as_secs()),
            ),
        }
    }

    async fn call_geonodes(
        &self,
        g: GeonodesTool,
        args: Value,
        token: Option<ProgressToken>,
        cancel: CancellationToken,
    ) -> CallToolResult {
        if let Err(e) = tools::validate_args(&g.input_schema(), &args) {
            return refusal(e.code.as_str(), Some(&e.field), e.message);
        }
        let Some((addon_id, command)) = g.blender_command() else {
            return match vibesync_geonodes::tools::call(g, &args) {
                Ok(v) => done(true, v),
                Err(e) => refusal(CallErrorCode::InvalidArgument.as_str(), Some(&format!("/{}", e.field)), e.message),
            };
        };
        let params = if g == GeonodesTool::Build {
            match vibesync_geonodes::tools::prepare_build(&args) {
                Ok(p) => p,
                Err(report) => {
                    let mut body = json!({"error_code": CallErrorCode::InvalidArgument.as_str(), "field": "/graph_json",
                        "message": "the graph has errors: nothing was sent to Blender; fix them (see `validation`) and retry"});
                    body["validation"] = serde_json::to_value(&*report).unwrap_or(Value::Null);
                    return done(false, body);
                }
            }
        } else {
            let mut a = args;
            if let Value::Object(m) = &mut a {
                m.remove("blender");
            }
            a
        };
        self.call_addon(addon_id, command, params, token, cancel).await
    }

    async fn ask(&self, msg: Value) -> Result<Value, LinkError> {
        let (_, rx) = self.link.request(msg, None)?;
        match tokio::time::timeout(Duration::from_secs(30), rx).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) => Err(LinkError::Closed),
            Err(_) => Err(LinkError::Timeout(30_000)),
        }
    }

    pub async fn call(
        &self,
        name: &str,
        args: Value,
        token: Option<ProgressToken>,
        cancel: CancellationToken,
    ) -> CallToolResult {
        if let Some(b) = Builtin::from_name(name) {
            if let Err(e) = tools::validate_args(&b.input_schema(), &args) {
                return refusal(e.code.as_str(), Some(&e.field), e.message);
            }
            return self.call_builtin(b, args, token).await;
        }
        if let Some(g) = GeonodesTool::from_name(name) {
            return self.call_geonodes(g, args, token, cancel).await;
        }
        let (addon_id, tool, mut tool_args) = if name == tools::ADDON_CALL {
            if let Err(e) = tools::validate_args(&tools::addon_call_schema(), &args) {
                return refusal(e.code.as_str(), Some(&e.field), e.message);
            }
            (
                args["addon_id"].as_str().unwrap_or_default().to_string(),
                args["tool"].as_str().unwrap_or_default().to_string(),
                args.get("arguments").cloned().unwrap_or(json!({})),
            )
        } else {
            match name.split_once('.') {
                Some((a, t)) => (a.to_string(), t.to_string(), args),
                None => return refusal(CallErrorCode::UnknownTool.as_str(), None, format!("no tool `{name}`")),
            }
        };
        let Some(reg) = self.link.registry() else {
            return refusal(
                CallErrorCode::EditorOffline.as_str(),
                None,
                format!("`{addon_id}.{tool}`: the VibeSync daemon is not reachable; start it with `vibesync serve` and open Blender"),
            );
        };
        // A tool this server does not list goes to the daemon all the same: it refuses it in the
        // order of docs/PROTOCOL.md §9.2 (`SAFE_MODE` first, then `EDITOR_OFFLINE`, then
        // `UNKNOWN_TOOL`), so that an agent hears why — not "enable the add-on" while the
        // daemon is in safe mode or no Blender is connected. (Blender checks the arguments of
        // a tool it offers itself, should the daemon know it before this server does.)
        if let Some(t) = tools::registry_tools(&reg).remove(&format!("{addon_id}.{tool}")) {
            if let Err(e) = tools::validate_args(&t.input_schema, &tool_args) {
                return refusal(e.code.as_str(), Some(&e.field), e.message);
            }
            tools::integers_as_integers(&t.input_schema, &mut tool_args);
        }
        self.call_addon(&addon_id, &tool, tool_args, token, cancel).await
    }
}

impl ServerHandler for VibeSyncMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().enable_tool_list_changed().build())
            .with_server_info(Implementation::new("vibesync", env!("CARGO_PKG_VERSION")))
            .with_instructions(tools::instructions(self.link.registry().as_ref()))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = Value::Object(request.arguments.unwrap_or_default());
        let token = context.meta.get_progress_token();
        Ok(self.call(&request.name, args, token, context.ct.clone()).await.into())
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        *self.peer.lock().unwrap() = Some(context.peer);
    }
}
