//! Rate limits that never lose the last pose (docs/PROTOCOL.md §2, "Rate limits"): a
//! session over its budget gets its coalescible changes (`transform`, `rename`,
//! `visibility`) merged — the latest value per uuid and op — instead of refused, and the
//! merge is submitted as one `change` when the budget allows. Pure logic; the session's read
//! loop does the I/O.

use std::collections::HashMap;

use serde_json::Value;
use vibesync_protocol::message::Change;

/// Ops whose later value replaces an earlier one.
pub const COALESCIBLE: [&str; 3] = ["transform", "rename", "visibility"];

/// Over-budget `change` requests of one session, merged.
#[derive(Debug, Default)]
pub struct Overflow {
    /// (uuid, op) in first-arrival order, and the latest change for each.
    order: Vec<(String, String)>,
    latest: HashMap<(String, String), Value>,
    /// Held requests, oldest first; the last one carries the merged changes.
    requests: Vec<Change>,
    /// uuid → the latest `seen` mark of the held requests (marks only grow on a connection).
    seen: std::collections::BTreeMap<String, u64>,
}

/// Are two requests alike in everything but their changes, `request_id` and `base_seq`
/// (e.g. the same `automation` marking)? Only such requests are merged. The destructuring
/// is exhaustive, so a field added to `Change` must be decided on here. (Comparing fields,
/// not serialized requests: serializing every held request's changes to compare them was a
/// fifth of a session's CPU in a burst, docs/BENCHMARKS.md.)
fn same_shape(a: &Change, b: &Change) -> bool {
    // `seen` is merged (the latest mark per uuid), like the changes.
    let Change { request_id: _, base_seq: _, changes: _, automation, seen: _ } = a;
    *automation == b.automation
}

fn key(change: &Value) -> Option<(String, String)> {
    let op = change.get("op")?.as_str()?;
    let uuid = change.get("uuid")?.as_str()?;
    COALESCIBLE.contains(&op).then(|| (uuid.to_string(), op.to_string()))
}

impl Overflow {
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    /// Held requests.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.requests.len()
    }

    /// May `c` be held and merged (rather than refused)? Every change must be coalescible,
    /// the frame must carry no attachment, and it must be alike the held ones.
    pub fn accepts(&self, c: &Change, has_attachment: bool) -> bool {
        !has_attachment
            && !c.changes.is_empty()
            && c.changes.iter().all(|ch| key(ch).is_some())
            && self.requests.first().is_none_or(|first| same_shape(first, c))
    }

    /// Hold `c` (call only when [`Overflow::accepts`] said yes).
    pub fn push(&mut self, c: Change) {
        for ch in &c.changes {
            let Some(k) = key(ch) else { continue };
            if self.latest.insert(k.clone(), ch.clone()).is_none() {
                self.order.push(k);
            }
        }
        for (u, m) in &c.seen {
            let e = self.seen.entry(u.clone()).or_default();
            *e = (*e).max(*m);
        }
        self.requests.push(c);
    }

    /// Take everything held: the earlier requests as they came (each answered `coalesced`,
    /// one result per change), and the last one
    /// carrying every merged change in first-arrival order, with its own `base_seq`.
    pub fn take(&mut self) -> Option<(Vec<Change>, Change)> {
        let mut last = self.requests.pop()?;
        let earlier = std::mem::take(&mut self.requests);
        let mut latest = std::mem::take(&mut self.latest);
        last.changes = std::mem::take(&mut self.order).into_iter().filter_map(|k| latest.remove(&k)).collect();
        last.seen = std::mem::take(&mut self.seen);
        Some((earlier, last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn change(id: &str, changes: Value) -> Change {
        serde_json::from_value(json!({"request_id": id, "base_seq": 7, "changes": changes})).unwrap()
    }

    #[test]
    fn latest_value_per_uuid_and_op_wins_in_first_arrival_order() {
        let mut o = Overflow::default();
        for (i, x) in [1.0, 2.0, 3.0].iter().enumerate() {
            let c = change(
                &format!("r{i}"),
                json!([{"op":"transform","uuid":"a","t":[x,0,0]},{"op":"rename","uuid":"b","name":format!("n{i}")}]),
            );
            assert!(o.accepts(&c, false));
            o.push(c);
        }
        o.push(change("r3", json!([{"op":"transform","uuid":"c","t":[9,0,0]}])));
        assert_eq!(o.len(), 4);
        let (earlier, last) = o.take().unwrap();
        assert_eq!(earlier.iter().map(|c| c.request_id.as_str()).collect::<Vec<_>>(), ["r0", "r1", "r2"]);
        assert_eq!(earlier[0].changes.len(), 2, "earlier requests keep their changes (for their acks)");
        assert_eq!(last.request_id, "r3");
        assert_eq!(
            last.changes,
            vec![
                json!({"op":"transform","uuid":"a","t":[3.0,0,0]}),
                json!({"op":"rename","uuid":"b","name":"n2"}),
                json!({"op":"transform","uuid":"c","t":[9,0,0]}),
            ]
        );
        assert!(o.is_empty() && o.take().is_none());
    }

    #[test]
    fn structural_changes_attachments_and_other_shapes_are_not_merged() {
        let o = Overflow::default();
        assert!(!o.accepts(&change("r", json!([{"op":"create","uuid":"a"}])), false));
        assert!(!o.accepts(&change("r", json!([{"op":"transform","uuid":"a"},{"op":"delete","uuid":"b"}])), false));
        assert!(!o.accepts(&change("r", json!([{"op":"transform","uuid":"a"}])), true));
        assert!(!o.accepts(&change("r", json!([])), false));
        assert!(!o.accepts(&change("r", json!([{"op":"transform"}])), false));
    }

    #[test]
    fn requests_are_merged_only_with_the_same_automation_marking() {
        let mut o = Overflow::default();
        let person = change("r0", json!([{"op":"transform","uuid":"a","t":[1,0,0]}]));
        let mut agent = change("r1", json!([{"op":"transform","uuid":"a","t":[2,0,0]}]));
        agent.automation = Some(vibesync_protocol::message::Automation {
            operation_id: "op".into(),
            tool: "t".into(),
            agent_session: "s".into(),
        });
        assert!(o.accepts(&person, false));
        o.push(person.clone());
        assert!(!o.accepts(&agent, false), "a person's and automation's changes are not merged");
        let mut other_base = person.clone();
        other_base.base_seq = 99;
        other_base.request_id = "r2".into();
        assert!(o.accepts(&other_base, false), "request_id and base_seq do not matter");
    }
}
