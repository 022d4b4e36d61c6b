//! `vibesync history` and `vibesync restore` (README "Restore"): list the audit points of a
//! project, and bring objects back to one of them as a new transaction from a `cli` session.

use std::process::ExitCode;
use std::time::{Duration, Instant};
use vibesync_protocol::AdminAction;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use vibesync_daemon::restore::{self, AuditPoint};
use vibesync_daemon::{client, DataDir};

pub fn history(
    data: &DataDir,
    project: &str,
    uuid: Option<&str>,
    limit: usize,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut points = restore::history(data, project, uuid)?;
    points.truncate(limit);
    if json {
        println!("{}", serde_json::to_string_pretty(&json!({"project_id": project, "points": points}))?);
        return Ok(ExitCode::SUCCESS);
    }
    if points.is_empty() {
        println!("no audit points for project {project}{}", uuid.map(|u| format!(" and uuid {u}")).unwrap_or_default());
    }
    for p in &points {
        let who: Vec<String> = p.who.iter().map(|w| w.describe()).collect();
        println!(
            "{} {} seq {}-{} by {}",
            &p.commit[..12],
            p.time,
            p.first_seq,
            p.last_seq,
            if who.is_empty() { "?".to_string() } else { who.join(", ") }
        );
        for c in &p.changes {
            let fields = if c.fields.is_empty() { String::new() } else { format!(" ({})", c.fields.join(", ")) };
            println!("    {:<7} {} {} `{}`{fields}", c.change.as_str(), c.uuid, c.kind, c.name);
        }
    }
    if !points.is_empty() && !json {
        println!("restore one: vibesync restore --project {project} --to <commit|seq|time> [--uuid U…]");
    }
    Ok(ExitCode::SUCCESS)
}

fn describe(p: &AuditPoint) -> Value {
    json!({"commit": p.commit, "time": p.time, "first_seq": p.first_seq, "last_seq": p.last_seq})
}

pub fn restore(data: &DataDir, project: &str, to: &str, uuids: &[String], json: bool) -> anyhow::Result<ExitCode> {
    let point = restore::resolve(data, to)?;
    let target = restore::states_at(data, &point, project)?;
    if vibesync_daemon::verify::daemon_running(data).is_none() {
        bail!(
            "no daemon is running on {}; start it (`vibesync serve`): a restore is a transaction synced to the editors",
            data.root().display()
        );
    }
    let (addr, token) = client::discover(data)?;
    let mut c = client::Client::connect(addr, &token, project, "cli").context("connecting to the daemon")?;
    let reply = c.request(
        &json!({"type": "admin", "request_id": "entries", "action": AdminAction::Entries, "project_id": project}),
    )?;
    if reply["type"] == "error" {
        bail!("{}: {}", reply["code"].as_str().unwrap_or("?"), reply["message"].as_str().unwrap_or(""));
    }
    let current: std::collections::BTreeMap<String, Value> = reply["result"]["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| Some((e["uuid"].as_str()?.to_string(), e["state"].clone())))
        .collect();
    let base_seq = reply["result"]["seq"].as_u64().unwrap_or(0);
    let unknown: Vec<&String> =
        uuids.iter().filter(|u| !target.contains_key(*u) && !current.contains_key(*u)).collect();
    if !unknown.is_empty() {
        bail!(
            "{} not in project {project} at {} nor now; see `vibesync history --project {project}`",
            unknown.iter().map(|u| u.as_str()).collect::<Vec<_>>().join(", "),
            &point.commit[..12]
        );
    }
    let ops = restore::plan(&target, &current, uuids);
    let missing: Vec<&str> =
        ops.iter().filter_map(|o| o["mesh_hash"].as_str()).filter(|h| !data.blobs().join(h).exists()).collect();
    if !missing.is_empty() {
        bail!(
            "mesh blob(s) {} missing from {}: cannot restore those meshes",
            missing.join(", "),
            data.blobs().display()
        );
    }
    if ops.is_empty() {
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &json!({"project_id": project, "target": describe(&point), "changes": 0, "outcome": "nothing_to_do"})
                )?
            );
        } else {
            println!(
                "nothing to restore: project {project} already matches {} (seq {})",
                &point.commit[..12],
                point.last_seq
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (results, outcomes) = send(&mut c, base_seq, &ops)?;
    let failed: Vec<&Value> = results.iter().filter(|r| r["status"] != "queued").collect();
    // `dropped`: that change was already the authoritative state (nothing to do).
    let committed =
        outcomes.iter().all(|o| o["outcome"] == "committed" || o["outcome"] == "dropped") && failed.is_empty();
    let seq = outcomes.iter().filter_map(|o| o["seq"].as_u64()).max();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "project_id": project,
                "target": describe(&point),
                "changes": ops.len(),
                "results": results,
                "batches": outcomes,
                "outcome": if committed { "committed" } else { "failed" },
                "seq": seq,
            }))?
        );
    } else {
        for r in &failed {
            println!("  refused: {r}");
        }
        for o in &outcomes {
            println!(
                "  batch {} {} at seq {} ({} uuid(s)){}",
                o["batch_id"].as_str().unwrap_or(""),
                o["outcome"].as_str().unwrap_or(""),
                o["seq"],
                o["uuids"].as_array().map(|a| a.len()).unwrap_or(0),
                o["error_code"].as_str().map(|c| format!(" {c}")).unwrap_or_default()
            );
        }
        if committed {
            println!(
                "restored {} object(s) of project {project} to {} ({}, seq {}) as WAL seq {}; undo it with another restore (`vibesync history --project {project}`)",
                ops.len(),
                &point.commit[..12],
                point.time,
                point.last_seq,
                seq.map(|s| s.to_string()).unwrap_or_default()
            );
        } else {
            println!("restore not (fully) applied: nothing was half-applied; see above and `vibesync tail`");
        }
    }
    Ok(if committed { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Send the plan as `change` requests and wait until every queued uuid has its
/// `batch_result` (committed, rolled back or dropped). Returns (per-change results, results).
fn send(c: &mut client::Client, base_seq: u64, ops: &[Value]) -> anyhow::Result<(Vec<Value>, Vec<Value>)> {
    let mut results = vec![];
    let mut pending = std::collections::BTreeSet::new();
    for (i, chunk) in ops.chunks(vibesync_protocol::validate::MAX_ITEMS_PER_REQUEST).enumerate() {
        let rid = format!("restore-{i}");
        let ack = c.request(&json!({"type": "change", "request_id": rid, "base_seq": base_seq, "changes": chunk}))?;
        if ack["type"] == "error" {
            bail!("{}: {}", ack["code"].as_str().unwrap_or("?"), ack["message"].as_str().unwrap_or(""));
        }
        for (op, r) in chunk.iter().zip(ack["results"].as_array().into_iter().flatten()) {
            if r["status"] == "queued" {
                pending.insert(op["uuid"].as_str().unwrap_or("").to_string());
            }
            results.push(r.clone());
        }
    }
    let mut outcomes = vec![];
    let deadline = Instant::now() + Duration::from_secs(60);
    c.set_read_timeout(Some(Duration::from_millis(500)));
    while !pending.is_empty() {
        if Instant::now() > deadline {
            bail!("no batch_result for {} uuid(s) within 60 s; see `vibesync tail`", pending.len());
        }
        let Ok(f) = c.recv_frame() else { continue };
        let m: Value = serde_json::from_slice(&f.json).context("a frame from the daemon")?;
        if m["type"] == "batch_result" {
            for u in m["uuids"].as_array().into_iter().flatten() {
                pending.remove(u.as_str().unwrap_or(""));
            }
            outcomes.push(m);
        }
    }
    Ok((results, outcomes))
}
