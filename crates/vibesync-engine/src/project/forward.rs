//! Pipeline step `forward` of a project's sync: fenced batches to one session (the batch's
//! ops in the receiver's units, mesh attachments from the blob store) and live previews of
//! fast-path changes through the throttle (docs/PROTOCOL.md §6.3).

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Serialize;
use tracing::{debug, error};
use vibesync_protocol::{ClientKind, Frame, MessageType, Outbound, PathKind};

use super::{Cx, Editor, Project, SessionId};
use crate::fast::HashMap;
use crate::sync::{ChangeOp, WireChange};

/// A `live` frame (§6.3): one change, lengths in the receiver's units. The same bytes as
/// `Outbound::Live`, written without building a `serde_json::Value` (a drag sends one per
/// object and receiver every editor frame).
fn live_frame(uuid: &str, p: &Preview, unit_scale: f64) -> Frame {
    #[derive(Serialize)]
    struct Live<'a> {
        #[serde(rename = "type")]
        kind: MessageType,
        change: WireChange<'a>,
        origin: ClientKind,
        mark: u64,
    }
    let live = Live {
        kind: MessageType::Live,
        change: WireChange { uuid, op: &p.op, unit_scale },
        origin: p.origin,
        mark: p.mark,
    };
    Frame::new(serde_json::to_vec(&live).expect("a live frame serializes"), Bytes::new())
}

/// An `apply` frame's message (§6.3): one change of a fenced batch, lengths in the receiver's
/// units, and whether automation made it.
fn apply_json(batch_id: &str, uuid: &str, op: &ChangeOp, unit_scale: f64, automation: bool) -> Vec<u8> {
    #[derive(Serialize)]
    struct Apply<'a> {
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        automation: bool,
        batch_id: &'a str,
        change: WireChange<'a>,
        #[serde(rename = "type")]
        kind: MessageType,
    }
    let apply = Apply { automation, batch_id, change: WireChange { uuid, op, unit_scale }, kind: MessageType::Apply };
    serde_json::to_vec(&apply).expect("an apply frame serializes")
}

/// A live preview (§6.3), waiting in the throttle or going out: the change, the editor kind
/// that made it, its admission mark.
#[derive(Debug, Clone)]
pub(super) struct Preview {
    pub op: ChangeOp,
    pub origin: ClientKind,
    pub mark: u64,
}

impl Project {
    /// A seq goes to an editor (fences, `batch_result`): see `late_commits`.
    pub(super) fn expose(&self, seq: u64) {
        self.exposed_seq.fetch_max(seq, std::sync::atomic::Ordering::Relaxed);
    }

    /// Send admitted fast-path changes to the project's other scene holders at once, at most
    /// one frame per receiver, uuid and op per `sync.live_interval_ms` (the rest wait in the
    /// throttle, the latest value winning).
    pub(super) async fn forward_live(&mut self, cx: &Cx<'_>, origin: &Editor, changes: Vec<(String, Preview)>) {
        if changes.is_empty() {
            return;
        }
        let now = cx.now();
        for r in self.project_sessions(cx) {
            if r.session_id == origin.session_id {
                continue;
            }
            let items: Vec<(String, Preview)> = changes
                .iter()
                .filter_map(|(uuid, p)| {
                    let p = self.live.offer(now, &r.session_id, uuid, p.op.name(), p.clone())?;
                    Some((uuid.clone(), p))
                })
                .collect();
            self.offer_live(cx, &r, items).await;
        }
    }

    /// Deliver the live previews whose interval has passed (the trailing values).
    pub(super) async fn flush_live(&mut self, cx: &Cx<'_>) {
        let due = self.live.take_due(cx.now());
        if due.is_empty() {
            return;
        }
        let mut per: BTreeMap<SessionId, Vec<(String, Preview)>> = BTreeMap::new();
        for (r, uuid, p) in due {
            if !self.holds_live(&uuid) {
                per.entry(r).or_default().push((uuid, p));
            }
        }
        for (r, items) in per {
            let Some(s) = cx.view.session(&r) else { continue };
            self.offer_live(cx, &s, items).await;
        }
    }

    /// Offer live frames to one receiver and remember the marks of those it was sent (a
    /// change it makes later names the last one it applied in `seen`). Previews never wait
    /// for a receiver: one whose writer queue is half full gets none (the window's batch
    /// brings it the state, §6.3).
    async fn offer_live(&mut self, cx: &Cx<'_>, r: &Editor, items: Vec<(String, Preview)>) {
        let n = items.len();
        if n == 0 {
            return;
        }
        let frames = items.iter().map(|(u, p)| live_frame(u, p, r.unit_scale)).collect();
        let queued = cx.offer(&r.session_id, frames).await;
        if queued < n {
            debug!(session_id = %r.session_id, dropped = n - queued, "live previews dropped: the receiver's queue is busy");
        }
        let now = cx.now();
        for (u, p) in items.into_iter().take(queued) {
            self.delivered.record(now, r.session_id.clone(), &u, p.op.name(), p.mark);
        }
    }

    /// Fenced batch to one session; false when it could not be delivered. `automation`: per op
    /// of `ops`, whether automation made it (shorter, as for a `resync`: the rest are not).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn send_batch(
        &self,
        cx: &Cx<'_>,
        s: &Editor,
        batch_id: &str,
        seq: u64,
        path: PathKind,
        ops: &[(String, ChangeOp)],
        automation: &[bool],
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
        // Each stored mesh is read (and checked against its hash) once per batch, however many
        // of its objects name it: a thousand collection instances share one geometry.
        let mut read: HashMap<&str, Bytes> = HashMap::default();
        for (i, (uuid, op)) in ops.iter().enumerate() {
            let json = apply_json(batch_id, uuid, op, s.unit_scale, automation.get(i).copied().unwrap_or(false));
            let attachment = match op.mesh_hash() {
                Some(h) => match read.get(h) {
                    Some(b) => b.clone(),
                    None => {
                        let b = match cx.view.blob(h) {
                            Ok(Some(b)) => Bytes::from(b),
                            Ok(None) => {
                                error!(mesh_hash = h, uuid = %uuid, "mesh blob missing; sent without mesh");
                                Bytes::new()
                            }
                            Err(e) => {
                                error!(mesh_hash = h, uuid = %uuid, error = %e, "mesh blob unreadable; sent without mesh");
                                Bytes::new()
                            }
                        };
                        read.insert(h, b.clone());
                        b
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

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};
    use vibesync_protocol::{ClientKind, Outbound};

    use super::{apply_json, live_frame, Preview};
    use crate::sync::{change_to_wire, ChangeOp, Material, ObjectState};

    /// The wire form of a change as it was built before `WireChange`, through a `Value`: the
    /// reference the typed encoder must match byte for byte.
    fn reference(uuid: &str, op: &ChangeOp, unit_scale: f64) -> Value {
        let t_out = |t: &[f64; 3]| json!(t.map(|x| x / unit_scale));
        match op {
            ChangeOp::Create(s) => {
                let mut v = json!({"op":"create","uuid":uuid,"kind":s.kind,"name":s.name,"parent":s.parent,
                    "t":t_out(&s.t),"r":s.r,"s":s.s,"visible":s.visible});
                if let Some(h) = &s.mesh_hash {
                    v["mesh_hash"] = json!(h);
                }
                if let Some(m) = &s.material {
                    v["material"] = serde_json::to_value(m).unwrap();
                }
                v
            }
            ChangeOp::Delete => json!({"op":"delete","uuid":uuid}),
            ChangeOp::Reparent(p) => json!({"op":"reparent","uuid":uuid,"parent":p}),
            ChangeOp::Mesh(h) => json!({"op":"mesh","uuid":uuid,"mesh_hash":h}),
            ChangeOp::Material(m) => json!({"op":"material","uuid":uuid,"material":m}),
            ChangeOp::Transform { t, r, s } => json!({"op":"transform","uuid":uuid,"t":t_out(t),"r":r,"s":s}),
            ChangeOp::Rename(n) => json!({"op":"rename","uuid":uuid,"name":n}),
            ChangeOp::Visibility(v) => json!({"op":"visibility","uuid":uuid,"visible":v}),
        }
    }

    fn every_op() -> Vec<ChangeOp> {
        let material =
            Material { base_color: [0.8, 0.1, 0.25, 1.0], metallic: 0.5, roughness: 0.125, emission: [0.0, 1.5, 0.0] };
        let state = |parent: Option<&str>, mesh: Option<&str>, material: Option<Material>| ObjectState {
            kind: "object".into(),
            name: "Cube \"quoted\" \u{1}".into(),
            parent: parent.map(str::to_string),
            visible: false,
            t: [1.0, -2.5, 1e-7],
            r: [0.0, 0.7071067690849304, 0.0, 0.7071067690849304],
            s: [1.0, 2.0, 0.3333333432674408],
            mesh_hash: mesh.map(str::to_string),
            material,
        };
        let hash = "ab".repeat(32);
        vec![
            ChangeOp::Create(state(None, None, None)),
            ChangeOp::Create(state(Some("6f1c2d3e-0000-4000-8000-000000000001"), Some(&hash), Some(material.clone()))),
            ChangeOp::Delete,
            ChangeOp::Reparent(None),
            ChangeOp::Reparent(Some("6f1c2d3e-0000-4000-8000-000000000001".into())),
            ChangeOp::Mesh(hash.clone()),
            ChangeOp::Material(Some(material)),
            ChangeOp::Material(None),
            ChangeOp::Transform { t: [123456.789, -0.1, 3.0], r: [0.0, 0.0, 0.0, 1.0], s: [1.0, 1.0, 1.0] },
            ChangeOp::Rename("Würfel.001".into()),
            ChangeOp::Visibility(true),
        ]
    }

    #[test]
    fn typed_frames_are_the_bytes_of_the_value_built_ones() {
        let uuid = "6f1c2d3e-0000-4000-8000-00000000000a";
        for op in every_op() {
            for unit_scale in [1.0, 0.01, 3.0] {
                let want = reference(uuid, &op, unit_scale);
                assert_eq!(change_to_wire(uuid, &op, unit_scale), want, "{op:?}");
                let p = Preview { op: op.clone(), origin: ClientKind::Unity, mark: 17 };
                let live = live_frame(uuid, &p, unit_scale);
                let old_live = Outbound::Live { change: want.clone(), origin: ClientKind::Unity, mark: 17 }.to_json();
                assert_eq!(String::from_utf8(live.json.to_vec()).unwrap(), String::from_utf8(old_live).unwrap());
                for automation in [false, true] {
                    let apply = apply_json("b-1", uuid, &op, unit_scale, automation);
                    let mut old = json!({"type": "apply", "batch_id": "b-1", "change": want});
                    if automation {
                        old["automation"] = json!(true);
                    }
                    let old_apply = serde_json::to_vec(&old).unwrap();
                    assert_eq!(String::from_utf8(apply).unwrap(), String::from_utf8(old_apply).unwrap());
                }
            }
        }
    }
}
