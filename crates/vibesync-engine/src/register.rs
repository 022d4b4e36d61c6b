//! Planning `register` and `tombstone` requests (docs/PROTOCOL.md §5).
//!
//! The planner sees the registry through [`View`] and returns a [`Plan`]: one result per
//! item (same order) and the registry STEP payloads to write in one WAL transaction.
//! Nothing is written for invalid items, unchanged items or collisions.

use crate::fast::HashMap;

use serde_json::{json, Value};
use vibesync_protocol::message::{ItemResult, RegisterItem};
use vibesync_protocol::validate;
use vibesync_protocol::{ItemErrorCode, ItemStatus};

/// What the planner needs to know about an existing live record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing {
    pub kind: String,
    pub name: String,
    pub quarantined: bool,
    /// The editor_ref bound for the requesting editor kind, if any.
    pub editor_ref: Option<String>,
}

/// Read-only access to the registry and to live claims.
pub trait View {
    /// The live (or quarantined) record of `uuid` in the request's project; `Err` (what
    /// failed) when the registry could not be read — never "absent".
    fn live(&self, uuid: &str) -> Result<Option<Existing>, String>;
    /// The session that currently holds `uuid` for the requesting editor kind, if it is
    /// connected (claims live only in memory and end with the session).
    fn claimed_by(&self, uuid: &str) -> Option<String>;
}

/// Who is asking.
#[derive(Debug, Clone)]
pub struct Requester<'a> {
    pub session_id: &'a str,
    pub editor: &'a str,
    pub client_id: &'a str,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub results: Vec<ItemResult>,
    /// STEP payloads (registry ops), in item order.
    pub steps: Vec<Value>,
    /// uuids the plan writes (for the WAL record's `uuids` and for locking).
    pub uuids: Vec<String>,
    /// uuids that collided, with a description of the holder (logged in the COMMIT record).
    pub collisions: Vec<Value>,
    /// The first registry read that failed: its items answer `STORAGE_FAILED` and nothing
    /// is written for them (docs/PROTOCOL.md §5).
    pub storage_failure: Option<String>,
}

impl Plan {
    fn with_capacity(items: usize) -> Plan {
        Plan {
            results: Vec::with_capacity(items),
            steps: vec![],
            uuids: vec![],
            collisions: vec![],
            storage_failure: None,
        }
    }

    pub fn writes_anything(&self) -> bool {
        !self.steps.is_empty() || !self.collisions.is_empty()
    }

    /// The registry could not say whether `uuid` exists: the item fails, nothing is planned.
    fn read_failed(&mut self, uuid: &str, at: &str, why: String) {
        self.results.push(ItemResult::error(
            uuid,
            ItemErrorCode::StorageFailed,
            format!("{at}: the registry could not be read ({why}); nothing was written for this item"),
        ));
        self.storage_failure.get_or_insert(why);
    }
}

pub const MAX_ITEMS: usize = validate::MAX_ITEMS_PER_REQUEST;

/// Plan a `register` request.
pub fn plan_register(items: &[RegisterItem], who: &Requester<'_>, view: &dyn View) -> Plan {
    let mut plan = Plan::with_capacity(items.len());
    let mut seen: HashMap<&str, usize> = HashMap::default();
    for (i, item) in items.iter().enumerate() {
        let check = validate::uuid(&item.uuid)
            .and_then(|_| validate::kind(&item.kind))
            .and_then(|_| validate::name(&item.name))
            .and_then(|_| validate::editor_ref(&item.editor_ref));
        if let Err(e) = check {
            plan.results.push(ItemResult::error(shown_uuid(&item.uuid), e.code, format!("items[{i}]: {}", e.message)));
            continue;
        }
        // `duplicate_of` names the original the editor kept the uuid on: a uuid, not this one.
        let original = match item.duplicate_of.as_deref() {
            Some(o) if o == item.uuid => Err(format!(
                "items[{i}].duplicate_of: names the item's own uuid; it names the original that kept the uuid the copy carried"
            )),
            Some(o) => validate::uuid(o).map_err(|e| format!("items[{i}].duplicate_of: {}", e.message)),
            None => Ok(()),
        };
        if let Err(why) = original {
            plan.results.push(ItemResult::error(&item.uuid, ItemErrorCode::InvalidUuid, why));
            continue;
        }
        if let Some(first) = seen.insert(item.uuid.as_str(), i) {
            plan.results.push(ItemResult::error(
                &item.uuid,
                ItemErrorCode::DuplicateInRequest,
                format!(
                    "items[{i}]: uuid already used by items[{first}] in this request; give each datablock its own uuid"
                ),
            ));
            continue;
        }
        let holder = view.claimed_by(&item.uuid).filter(|s| s != who.session_id);
        let existing = match view.live(&item.uuid) {
            Ok(e) => e,
            Err(why) => {
                plan.read_failed(&item.uuid, &format!("items[{i}]"), why);
                continue;
            }
        };
        if let Some(ex) = &existing {
            if ex.quarantined {
                plan.results.push(ItemResult::error(&item.uuid, ItemErrorCode::Quarantined, format!(
                    "items[{i}]: uuid is quarantined after a failure; release it with `vibesync quarantine release {}`", item.uuid)));
                continue;
            }
            let kind_clash = ex.kind != item.kind;
            if kind_clash || holder.is_some() {
                let why = if kind_clash {
                    format!("uuid is live as a {} (`{}`), this item is a {}", ex.kind, ex.name, item.kind)
                } else {
                    format!(
                        "uuid is live for `{}` held by session {}",
                        ex.editor_ref.clone().unwrap_or_default(),
                        holder.clone().unwrap_or_default()
                    )
                };
                plan.collisions.push(json!({"uuid": item.uuid, "editor_ref": item.editor_ref, "reason": why}));
                plan.results.push(ItemResult {
                    uuid: item.uuid.clone(),
                    status: ItemStatus::Collision,
                    error_code: None,
                    message: Some(format!("items[{i}]: {why}; give the newcomer a fresh uuid and register it")),
                });
                continue;
            }
            if ex.name == item.name && ex.editor_ref.as_deref() == Some(item.editor_ref.as_str()) {
                plan.results.push(ItemResult::ok(&item.uuid, ItemStatus::Unchanged));
                continue;
            }
            plan.results.push(ItemResult::ok(&item.uuid, ItemStatus::Updated));
        } else {
            plan.results.push(ItemResult::ok(&item.uuid, ItemStatus::Registered));
        }
        plan.uuids.push(item.uuid.clone());
        if let Some(orig) = item.duplicate_of.as_deref() {
            // Not a registry op: the WAL keeps the collision the editor resolved, for forensics.
            plan.steps.push(
                json!({"op": "duplicate", "uuid": item.uuid, "duplicate_of": orig, "editor_ref": item.editor_ref}),
            );
        }
        plan.steps.push(json!({
            "op": "register",
            "uuid": item.uuid,
            "kind": item.kind,
            "name": item.name,
            "editor": who.editor,
            "editor_ref": item.editor_ref,
            "session_id": who.session_id,
            "client_id": who.client_id,
        }));
    }
    plan
}

/// Plan a `tombstone` request by `who` (named in each STEP: the record keeps who deleted it).
pub fn plan_tombstone(uuids: &[String], who: &Requester<'_>, view: &dyn View) -> Plan {
    let mut plan = Plan::with_capacity(uuids.len());
    let mut seen: HashMap<&str, usize> = HashMap::default();
    for (i, u) in uuids.iter().enumerate() {
        if let Err(e) = validate::uuid(u) {
            plan.results.push(ItemResult::error(shown_uuid(u), e.code, format!("uuids[{i}]: {}", e.message)));
            continue;
        }
        if seen.insert(u.as_str(), i).is_some() {
            plan.results.push(ItemResult::error(
                u,
                ItemErrorCode::DuplicateInRequest,
                format!("uuids[{i}]: listed twice"),
            ));
            continue;
        }
        match view.live(u) {
            Err(why) => plan.read_failed(u, &format!("uuids[{i}]"), why),
            Ok(None) => plan.results.push(ItemResult::error(
                u,
                ItemErrorCode::NotFound,
                format!("uuids[{i}]: no live record in this project (never registered, or already tombstoned)"),
            )),
            Ok(Some(_)) => {
                plan.results.push(ItemResult::ok(u, ItemStatus::Tombstoned));
                plan.uuids.push(u.clone());
                plan.steps
                    .push(json!({"op": "tombstone", "uuid": u, "client_id": who.client_id, "editor": who.editor}));
            }
        }
    }
    plan
}

fn shown_uuid(u: &str) -> String {
    validate::truncate_for_message(u)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fast::HashMap;

    #[derive(Default)]
    struct Fake {
        live: HashMap<String, Existing>,
        claims: HashMap<String, String>,
        unreadable: crate::fast::HashSet<String>,
    }
    impl View for Fake {
        fn live(&self, uuid: &str) -> Result<Option<Existing>, String> {
            if self.unreadable.contains(uuid) {
                return Err(format!("sled read of {uuid} failed"));
            }
            Ok(self.live.get(uuid).cloned())
        }
        fn claimed_by(&self, uuid: &str) -> Option<String> {
            self.claims.get(uuid).cloned()
        }
    }

    const U1: &str = "6f1c2a4e-4b7d-4a53-9a43-9d7f9b0f1f3a";
    const U2: &str = "7f1c2a4e-4b7d-4a53-9a43-9d7f9b0f1f3a";

    fn item(uuid: &str, kind: &str, name: &str) -> RegisterItem {
        RegisterItem {
            uuid: uuid.into(),
            kind: kind.into(),
            name: name.into(),
            editor_ref: format!("OB:{name}"),
            duplicate_of: None,
        }
    }

    fn who() -> Requester<'static> {
        Requester { session_id: "s1", editor: "blender", client_id: "c" }
    }

    #[test]
    fn new_updated_unchanged() {
        let mut v = Fake::default();
        v.live.insert(
            U1.into(),
            Existing {
                kind: "object".into(),
                name: "Cube".into(),
                quarantined: false,
                editor_ref: Some("OB:Cube".into()),
            },
        );
        let p = plan_register(&[item(U1, "object", "Cube"), item(U2, "object", "New")], &who(), &v);
        assert_eq!(p.results[0].status, ItemStatus::Unchanged);
        assert_eq!(p.results[1].status, ItemStatus::Registered);
        assert_eq!(p.steps.len(), 1);
        let p = plan_register(&[item(U1, "object", "Renamed")], &who(), &v);
        assert_eq!(p.results[0].status, ItemStatus::Updated);
    }

    #[test]
    fn collisions_are_never_merged() {
        let mut v = Fake::default();
        v.live.insert(
            U1.into(),
            Existing {
                kind: "object".into(),
                name: "Cube".into(),
                quarantined: false,
                editor_ref: Some("OB:Cube".into()),
            },
        );
        v.claims.insert(U1.into(), "other-session".into());
        let p = plan_register(&[item(U1, "object", "Cube.001")], &who(), &v);
        assert_eq!(p.results[0].status, ItemStatus::Collision);
        assert!(p.steps.is_empty());
        assert_eq!(p.collisions.len(), 1);
        v.claims.clear();
        let p = plan_register(&[item(U1, "mesh", "Cube")], &who(), &v);
        assert_eq!(p.results[0].status, ItemStatus::Collision);
    }

    #[test]
    fn invalid_items_get_per_item_errors_and_nothing_written() {
        let v = Fake::default();
        let long = "x".repeat(2000);
        let p = plan_register(
            &[
                item("NOT-A-UUID", "object", "a"),
                item(U1, "spaceship", "a"),
                item(U2, "object", &long),
                item(U1, "object", "b"),
            ],
            &who(),
            &v,
        );
        let codes: Vec<_> = p.results.iter().map(|r| r.error_code).collect();
        use ItemErrorCode::*;
        assert_eq!(codes, vec![Some(InvalidUuid), Some(UnknownKind), Some(TooLarge), None]);
        assert_eq!(p.steps.len(), 1);
    }

    #[test]
    fn a_reported_duplicate_is_kept_in_the_wal() {
        let v = Fake::default();
        let mut it = item(U2, "object", "Cube.001");
        it.duplicate_of = Some(U1.into());
        let p = plan_register(&[it], &who(), &v);
        assert_eq!(p.results[0].status, ItemStatus::Registered);
        assert_eq!(p.steps[0]["op"], "duplicate");
        assert_eq!(p.steps[0]["duplicate_of"], U1);
        assert_eq!(p.steps[1]["op"], "register");
    }

    /// A `duplicate_of` that is not a uuid (or is the item's own) is refused per item, like
    /// a bad `uuid` — it was silently left out of the WAL (found by a client written from
    /// docs/PROTOCOL.md §5).
    #[test]
    fn a_duplicate_of_that_is_no_uuid_is_refused_by_name() {
        let v = Fake::default();
        for bad in ["6F1C2A4E-4B7D-4A53-9A43-9D7F9B0F1F3A", "00000000-0000-0000-0000-000000000000", "x", U2] {
            let mut it = item(U2, "object", "Cube.001");
            it.duplicate_of = Some(bad.into());
            let p = plan_register(&[it], &who(), &v);
            assert_eq!(p.results[0].error_code, Some(ItemErrorCode::InvalidUuid), "{bad}");
            assert!(p.results[0].message.as_deref().unwrap().contains("items[0].duplicate_of"), "{:?}", p.results[0]);
            assert!(p.steps.is_empty(), "nothing written for {bad}");
        }
    }

    #[test]
    fn tombstone_plan() {
        let mut v = Fake::default();
        v.live.insert(
            U1.into(),
            Existing { kind: "object".into(), name: "Cube".into(), quarantined: false, editor_ref: None },
        );
        let p = plan_tombstone(&[U1.into(), U2.into(), "bad".into()], &who(), &v);
        let s: Vec<_> = p.results.iter().map(|r| (r.status, r.error_code)).collect();
        assert_eq!(s[0], (ItemStatus::Tombstoned, None));
        assert_eq!(s[1], (ItemStatus::Error, Some(ItemErrorCode::NotFound)));
        assert_eq!(s[2], (ItemStatus::Error, Some(ItemErrorCode::InvalidUuid)));
        // The STEP names who deleted it (the record keeps it: docs/WAL.md, registry ops).
        let w = who();
        assert_eq!(p.steps, vec![json!({"op": "tombstone", "uuid": U1, "client_id": w.client_id, "editor": w.editor})]);
    }

    /// A read failure is never "absent": a register of an existing uuid of another kind must
    /// not answer `registered` (it would skip the kind-clash check), nor a tombstone
    /// `NOT_FOUND`. The item answers `STORAGE_FAILED`, the others go through.
    #[test]
    fn a_read_failure_fails_the_item_never_absent() {
        let mut v = Fake::default();
        v.unreadable.insert(U1.into());
        let p = plan_register(&[item(U1, "mesh", "Cube"), item(U2, "object", "New")], &who(), &v);
        assert_eq!(p.results[0].error_code, Some(ItemErrorCode::StorageFailed));
        assert_eq!(p.results[1].status, ItemStatus::Registered);
        assert_eq!(p.uuids, vec![U2.to_string()]);
        assert!(p.storage_failure.as_deref().is_some_and(|w| w.contains(U1)));
        let p = plan_tombstone(&[U1.into()], &who(), &v);
        assert_eq!(p.results[0].error_code, Some(ItemErrorCode::StorageFailed));
        assert!(p.steps.is_empty() && p.storage_failure.is_some());
    }
}
