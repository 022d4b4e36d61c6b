//! Pipeline step `forward` of a project's sync: fenced batches to one session (the batch's
//! ops in the receiver's units, mesh attachments from the blob store) and live previews of
//! fast-path changes through the throttle (docs/PROTOCOL.md §6.3).

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::json;
use tracing::{debug, error};
use vibesync_protocol::{ClientKind, Frame, Outbound, PathKind};

use super::{Cx, Editor, Project, SessionId};
use crate::sync::{change_to_wire, ChangeOp};

/// A `live` frame (§6.3): one change, lengths in the receiver's units.
fn live_frame(uuid: &str, op: &ChangeOp, origin: ClientKind, unit_scale: f64) -> Frame {
    Outbound::Live { change: change_to_wire(uuid, op, unit_scale), origin }.to_frame()
}

impl Project {
    /// A seq goes to an editor (fences, `batch_result`): see `late_commits`.
    pub(super) fn expose(&self, seq: u64) {
        self.exposed_seq.fetch_max(seq, std::sync::atomic::Ordering::Relaxed);
    }

    /// Send admitted fast-path changes to the project's other scene holders at once, at most
    /// one frame per receiver, uuid and op per `sync.live_interval_ms` (the rest wait in the
    /// throttle, the latest value winning).
    pub(super) async fn forward_live(&mut self, cx: &Cx<'_>, origin: &Editor, changes: Vec<(String, ChangeOp)>) {
        if changes.is_empty() {
            return;
        }
        let kind = origin.editor;
        let now = cx.now();
        for r in self.project_sessions(cx) {
            if r.session_id == origin.session_id {
                continue;
            }
            let frames: Vec<Frame> = changes
                .iter()
                .filter_map(|(uuid, op)| {
                    let sent = self.live.offer(now, &r.session_id, uuid, op.name(), (op.clone(), kind))?;
                    Some(live_frame(uuid, &sent.0, sent.1, r.unit_scale))
                })
                .collect();
            offer_live(cx, &r.session_id, frames).await;
        }
    }

    /// Deliver the live previews whose interval has passed (the trailing values).
    pub(super) async fn flush_live(&mut self, cx: &Cx<'_>) {
        let due = self.live.take_due(cx.now());
        if due.is_empty() {
            return;
        }
        let mut per: BTreeMap<SessionId, Vec<(String, ChangeOp, ClientKind)>> = BTreeMap::new();
        for (r, uuid, (op, kind)) in due {
            if !self.holds_live(&uuid) {
                per.entry(r).or_default().push((uuid, op, kind));
            }
        }
        for (r, items) in per {
            let Some(s) = cx.view.session(&r) else { continue };
            let frames = items.iter().map(|(u, op, k)| live_frame(u, op, *k, s.unit_scale)).collect();
            offer_live(cx, &r, frames).await;
        }
    }

    /// Fenced batch to one session; false when it could not be delivered.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn send_batch(
        &self,
        cx: &Cx<'_>,
        s: &Editor,
        batch_id: &str,
        seq: u64,
        path: PathKind,
        ops: &[(String, ChangeOp)],
        request_id: Option<&str>,
    ) -> bool {
        self.expose(seq);
        let mut frames = Vec::with_capacity(ops.len() + 2);
        frames.push(
            Outbound::BatchBegin {
                batch_id: batch_id.into(),
                seq,
                path,
                count: ops.len() as u32,
                request_id: request_id.map(str::to_string),
            }
            .to_frame(),
        );
        for (uuid, op) in ops {
            let change = change_to_wire(uuid, op, s.unit_scale);
            let json = serde_json::to_vec(&json!({"type": "apply", "batch_id": batch_id, "change": change}))
                .expect("apply serializes");
            let attachment = match op.mesh_hash() {
                Some(h) => match cx.view.blob(h) {
                    Some(b) => Bytes::from(b),
                    None => {
                        error!(mesh_hash = h, uuid = %uuid, "mesh blob missing; sent without mesh");
                        Bytes::new()
                    }
                },
                None => Bytes::new(),
            };
            frames.push(Frame::new(json, attachment));
        }
        frames.push(
            Outbound::BatchEnd { batch_id: batch_id.into(), seq, request_id: request_id.map(str::to_string) }
                .to_frame(),
        );
        cx.send(&s.session_id, frames).await
    }
}

/// Previews never wait for a receiver: one whose writer queue is half full gets none (the
/// window's batch brings it the state).
async fn offer_live(cx: &Cx<'_>, session_id: &str, frames: Vec<Frame>) {
    let n = frames.len();
    if n == 0 {
        return;
    }
    let queued = cx.offer(session_id, frames).await;
    if queued < n {
        debug!(session_id, dropped = n - queued, "live previews dropped: the receiver's queue is busy");
    }
}
