//! The narrow seam between the daemon's core and the modules it drives (docs/ARCHITECTURE.md
//! "Daemon modules"): [`SessionInfo`], what a connected session is, and [`Host`], what sync
//! and the agent router may ask of the daemon. Both sit below `core`, `sync` and `router`, so
//! the dependency graph is one-way: `core → sync`, `core → router`, and each of those → `host`.

use std::net::SocketAddr;
use std::time::Instant;

use vibesync_protocol::message::Hello;
use vibesync_protocol::{ClientKind, Frame};

use crate::config::Config;
use crate::stores::Stores;
use vibesync_engine::project::Editor;

/// Static facts about one connected session.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub session_id: String,
    pub editor: ClientKind,
    pub project_id: String,
    pub client_id: String,
    pub editor_version: String,
    pub unit_scale: f64,
    pub last_seq: u64,
    pub peer: SocketAddr,
    pub connected_at: Instant,
}

impl SessionInfo {
    /// Whether this session is a client of `kind` (`hello.editor` was validated against
    /// [`ClientKind`] at the handshake).
    pub fn is(&self, kind: ClientKind) -> bool {
        self.editor == kind
    }

    /// `project_id`: the effective project (named in the hello, or assigned to it).
    pub fn new(h: &Hello, editor: ClientKind, project_id: String, peer: SocketAddr) -> SessionInfo {
        let session_id = uuid::Uuid::new_v4().to_string();
        // No `client_id` (docs/PROTOCOL.md §3: optional): the session stands for its client,
        // so two clients that send none are never taken for one (staleness, kept work).
        let client_id = if h.client_id.is_empty() { session_id.clone() } else { h.client_id.clone() };
        SessionInfo {
            session_id,
            editor,
            project_id,
            client_id,
            editor_version: h.editor_version.clone(),
            unit_scale: h.unit_scale.unwrap_or(1.0),
            last_seq: h.last_seq.unwrap_or(0),
            peer,
            connected_at: Instant::now(),
        }
    }
}

impl From<&SessionInfo> for Editor {
    fn from(s: &SessionInfo) -> Self {
        Editor {
            session_id: s.session_id.clone(),
            editor: s.editor,
            client_id: s.client_id.clone(),
            unit_scale: s.unit_scale,
        }
    }
}

/// What sync's project actors and the agent router need of the daemon, and nothing more:
/// its settings and stores, the WAL's position, the project's sessions, sending to a session,
/// the daemon-wide mutation turn, FINALs, storage failures and safe mode. The daemon's core
/// implements it, so neither `sync` nor `router` depends on the core (no module circle).
pub trait Host: Send + Sync + 'static {
    fn config(&self) -> &Config;
    fn stores(&self) -> &Stores;
    fn last_seq(&self) -> u64;
    /// The connected sessions of `project` (any client kind).
    fn sessions_of(&self, project: &str) -> Vec<Editor>;
    fn session(&self, session_id: &str) -> Option<Editor>;
    /// Queue frames as one unit on a session's writer; false when not delivered.
    fn send_frames(&self, session_id: &str, frames: Vec<Frame>) -> impl std::future::Future<Output = bool> + Send;
    /// Best-effort frames (live previews); how many were queued.
    fn offer_frames(&self, session_id: &str, frames: Vec<Frame>) -> impl std::future::Future<Output = usize> + Send;
    /// The daemon-wide turn held around COMMIT + registry apply.
    fn mutation_turn(&self) -> impl std::future::Future<Output = tokio::sync::MutexGuard<'_, ()>> + Send;
    /// Write a committed transaction's FINAL and note it for the audit, off the ack path.
    fn finalize_later(&self, session_id: String, project_id: String, operation_id: String, uuids: Vec<String>);
    /// A storage failure outside a request: stop the daemon.
    fn storage_failure_notice(&self, operation_id: &str, message: &str);
    /// A storage failure answering `request_id`: stop the daemon; the frame to send.
    fn storage_failure_frame(&self, request_id: &str, operation_id: &str, message: String) -> Frame;
    fn safe_mode(&self) -> bool;
    fn set_safe_mode(&self, active: bool, reason: &str);
    /// Disconnect every session of `project` (`SYNC_RESTARTED`): its sync restarted. Their
    /// session ids.
    fn restart_sessions(&self, project: &str) -> Vec<String>;
    /// A step of `project`'s sync panicked in its actor's task: start its next actor now.
    fn restart_sync(self: &std::sync::Arc<Self>, project: &str);
    /// The operation ids whose FINAL a [`Host::finalize_later`] is writing now.
    fn finalizing(&self) -> std::collections::HashSet<String>;
    /// The uuids of `project` whose `tombstone` is committing: planned, and not yet applied
    /// to the registry (`core::registrar`).
    fn deleting(&self, project: &str) -> Vec<String>;
}
