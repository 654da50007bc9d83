//! What must hold after every fault (and its heal):
//!
//! * `acked_in_log` — every acknowledged action is in the log (its
//!   object's event), and no event id is stored twice;
//! * `digest_equals_replay` — the API's state digest equals a replay of the
//!   stream to the same sequence;
//! * `one_holder_per_generation` — no VIP has two holders at one
//!   generation: not in the log (two promotions to one generation naming
//!   different peers), not on the agents (two agents' persisted state
//!   holding one generation), not in the API's view (`split`);
//! * `live_holder_in_bound` — every VIP with a live candidate gets a live
//!   holder (its agent running, on the network, heard, and applying the
//!   current generation) within [`FAILOVER_BOUND`].
//!
//! Before the checks the rig must converge (`recovered`): every container
//! running, the API healthy, the event stream's replicas current, the API
//! and every service's cursor at the stream's last sequence.

use super::inject::World;
use crate::support::{Acked, Rig, CURSORS};
use powernode_log::jetstream::{durable_name, DEFAULT_STREAM};
use powernode_tests::lifecycle_support::wait_until;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

/// How long the rig may take to converge after a heal.
pub const RECOVERY: Duration = Duration::from_secs(120);

/// The failover bound: the sensor's 3 s silence threshold, a 1 s
/// heartbeat, the campaign's approval (polled every 0.4 s), the promotion
/// and the new holder applying it, with room for a loaded 2-core machine.
pub const FAILOVER_BOUND: Duration = Duration::from_secs(10);

/// The invariants, in the table's order.
pub const INVARIANTS: [&str; 5] = [
    "recovered",
    "acked_in_log",
    "digest_equals_replay",
    "one_holder_per_generation",
    "live_holder_in_bound",
];

/// Waits until the rig has converged; answers the time it took.
pub async fn converge(rig: &Rig, world: &World) -> Result<Duration, String> {
    let started = Instant::now();
    let containers: Vec<&String> = world
        .services
        .values()
        .chain(world.nats.values())
        .chain(world.agents.values())
        .collect();
    let mut args = vec!["inspect", "-f", "{{.Name}} {{.State.Running}}"];
    args.extend(containers.iter().map(|c| c.as_str()));
    wait_until(RECOVERY, "every container running", || async {
        let out = rig.docker(&args).map_err(|e| format!("{e:#}"))?;
        let stopped: Vec<&str> = out.lines().filter(|l| !l.ends_with(" true")).collect();
        if stopped.is_empty() {
            Ok(())
        } else {
            Err(format!("not running: {stopped:?}"))
        }
    })
    .await
    .map_err(|e| format!("{e:#}"))?;
    let left = |s: Instant| RECOVERY.saturating_sub(s.elapsed());
    wait_until(
        left(started),
        "the event stream's replicas current",
        || async {
            let c = rig.stream_cluster().await.map_err(|e| format!("{e:#}"))?;
            let replicas = c["replicas"].as_array().cloned().unwrap_or_default();
            let current = replicas
                .iter()
                .all(|r| r["current"] == true && r["lag"].as_u64().unwrap_or(0) == 0);
            if c["leader"].is_string() && replicas.len() == 2 && current {
                Ok(())
            } else {
                Err(c.to_string())
            }
        },
    )
    .await
    .map_err(|e| format!("{e:#}"))?;
    let last = wait_until(left(started), "the stream's last sequence", || async {
        rig.last_seq().await.map_err(|e| format!("{e:#}"))
    })
    .await
    .map_err(|e| format!("{e:#}"))?;
    wait_until(left(started), &format!("the API at seq {last}"), || async {
        let h = rig.healthz().await.map_err(|e| format!("{e:#}"))?;
        let applied = h["applied_seq"].as_u64().unwrap_or(0);
        if applied >= last && h["status"] == "ok" {
            Ok(())
        } else {
            Err(h.to_string())
        }
    })
    .await
    .map_err(|e| format!("{e:#}"))?;
    let js = async_nats::jetstream::new(rig.nats.clone());
    for name in CURSORS {
        let durable = durable_name(name);
        wait_until(
            left(started),
            &format!("cursor {durable} through seq {last}"),
            || {
                let (js, durable) = (js.clone(), durable.clone());
                async move {
                    let stream = js
                        .get_stream(DEFAULT_STREAM)
                        .await
                        .map_err(|e| e.to_string())?;
                    let info = stream
                        .consumer_info(&durable)
                        .await
                        .map_err(|e| e.to_string())?;
                    let floor = info.ack_floor.stream_sequence;
                    if floor >= last {
                        Ok(())
                    } else {
                        Err(format!("ack floor {floor}, pending {}", info.num_pending))
                    }
                }
            },
        )
        .await
        .map_err(|e| format!("{e:#}"))?;
    }
    Ok(started.elapsed())
}

/// Every acknowledged action is in the log; no event id twice.
pub fn acked_in_log(ledger: &[Acked], events: &[Value]) -> Result<String, String> {
    let mut ids = HashSet::new();
    let mut twice = Vec::new();
    let mut seen: HashSet<(&str, &str)> = HashSet::new();
    for e in events {
        if !ids.insert(e["id"].as_str().unwrap_or_default()) {
            twice.push(e["seq"].clone());
        }
        let kind = e["kind"].as_str().unwrap_or_default();
        seen.insert((e["aggregate"]["id"].as_str().unwrap_or_default(), kind));
        if let Some(i) = e["payload"]["instance_id"].as_str() {
            seen.insert((i, kind));
        }
    }
    let lost: Vec<&str> = ledger
        .iter()
        .filter(|a| !seen.contains(&(a.aggregate_id.as_str(), a.kind.as_str())))
        .map(|a| a.what.as_str())
        .collect();
    if lost.is_empty() && twice.is_empty() {
        Ok(format!("{} acknowledged, all in the log", ledger.len()))
    } else {
        Err(format!(
            "{} of {} acknowledged missing from the log ({:?}); event ids stored twice at seqs {twice:?}",
            lost.len(),
            ledger.len(),
            lost.iter().take(10).collect::<Vec<_>>()
        ))
    }
}

/// No VIP has two holders at one generation: in the log, on the agents,
/// in the API's view.
pub fn one_holder_per_generation(
    rig: &Rig,
    events: &[Value],
    vips: &[Value],
) -> Result<String, String> {
    let mut problems = Vec::new();
    let mut promoted: BTreeMap<(String, u64), BTreeSet<String>> = BTreeMap::new();
    for e in events
        .iter()
        .filter(|e| e["kind"] == "system.sdwan.virtual_ip.promoted")
    {
        let p = &e["payload"];
        let key = (
            p["virtual_ip_id"].as_str().unwrap_or_default().to_string(),
            p["generation"].as_u64().unwrap_or(0),
        );
        let peer = p["to_peer_id"].as_str().unwrap_or_default().to_string();
        promoted.entry(key).or_default().insert(peer);
    }
    for ((vip, generation), peers) in &promoted {
        if peers.len() > 1 {
            problems.push(format!(
                "log: {vip} promoted to generation {generation} for {peers:?}"
            ));
        }
    }
    let mut held: BTreeMap<(String, u64), Vec<String>> = BTreeMap::new();
    for slot in rig.agents.keys() {
        let Ok(state) = rig.agent_state(slot) else {
            continue;
        };
        for (vip, v) in state["vips"].as_object().into_iter().flatten() {
            if let Some(g) = v["held_generation"].as_u64() {
                held.entry((vip.clone(), g)).or_default().push(slot.clone());
            }
        }
    }
    for ((vip, generation), slots) in &held {
        if slots.len() > 1 {
            problems.push(format!(
                "agents: {slots:?} all hold {vip} at generation {generation}"
            ));
        }
    }
    for v in vips {
        if v["split"] == true {
            problems.push(format!(
                "API: {} split, applied generations {}",
                v["id"], v["applied_generations"]
            ));
        }
    }
    if problems.is_empty() {
        Ok(format!(
            "{} promotions, {} held generations on agents",
            promoted.len(),
            held.len()
        ))
    } else {
        Err(problems.join("; "))
    }
}

/// The allocated VIPs of the clusters.
pub async fn vips(rig: &Rig, clusters: &[String]) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for c in clusters {
        let v = rig.vip(c).await.map_err(|e| format!("{e:#}"))?;
        if v["status"] == "allocated" {
            out.push(v);
        }
    }
    Ok(out)
}

/// Why the VIP has no live holder, or the slot of its live holder.
pub fn live_holder(rig: &Rig, world: &World, v: &Value) -> Result<String, String> {
    let instance = v["holders"][0].as_str().ok_or("no holder")?;
    let peer = v["holder_peer_id"].as_str().unwrap_or_default();
    let agent = rig.agent_of(instance).map_err(|e| format!("{e:#}"))?;
    if !world.live(rig, &agent.container) {
        return Err(format!("holder {} is down", agent.slot));
    }
    if v["holder_silent"] == true {
        return Err(format!("holder {} silent", agent.slot));
    }
    if v["applied_generations"][peer] != v["generation"] {
        return Err(format!(
            "holder {} applies {} of generation {}",
            agent.slot, v["applied_generations"][peer], v["generation"]
        ));
    }
    Ok(agent.slot.clone())
}

/// Whether any of the VIP's holder and candidates runs and is connected.
pub fn has_live_candidate(rig: &Rig, world: &World, v: &Value) -> bool {
    let holder = v["holders"].as_array().into_iter().flatten();
    let candidates = v["failover_candidates"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| &c["instance_id"]);
    holder.chain(candidates).any(|i| {
        i.as_str()
            .and_then(|i| rig.agent_of(i).ok())
            .is_some_and(|a| world.live(rig, &a.container))
    })
}

/// Waits until every allocated VIP with a live candidate has a live holder,
/// for at most `bound`; answers how long it took.
pub async fn live_holders(
    rig: &Rig,
    world: &World,
    clusters: &[String],
    bound: Duration,
) -> Result<Duration, String> {
    let started = Instant::now();
    wait_until(
        bound,
        "a live holder for every VIP with a live candidate",
        || async {
            let vips = vips(rig, clusters).await?;
            let mut missing = Vec::new();
            for v in &vips {
                if let Err(why) = live_holder(rig, world, v) {
                    if has_live_candidate(rig, world, v) {
                        missing.push(format!("{}: {why}", v["id"]));
                    }
                }
            }
            if missing.is_empty() {
                Ok(started.elapsed())
            } else {
                Err(missing.join("; "))
            }
        },
    )
    .await
    .map_err(|e| format!("{e:#}"))
}

/// The log's events by kind (for the report).
pub fn counts(events: &[Value], kinds: &[&str]) -> Value {
    let mut n: HashMap<&str, usize> = HashMap::new();
    for e in events {
        if let Some(k) = e["kind"].as_str() {
            if kinds.contains(&k) {
                *n.entry(k).or_default() += 1;
            }
        }
    }
    json!(n)
}
