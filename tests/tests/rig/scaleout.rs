//! Scale-out by account partitions (`--partitions 16`, docs/scale.md).
//! The deciding services — provisioner, sdwan, failover, skills — run as
//! two replicas each, splitting 16 partitions through leases in the
//! `pn_partition_leases` KV bucket.
//!
//! 1. Every service's 16 partitions are held, 6–10 by each replica.
//! 2. For every service, the replica owning the rig account's partition is
//!    `docker kill`ed; the other holds all 16 once the leases expire (the
//!    handoff time is measured).
//! 3. Meanwhile cluster B's VIP holder is killed and the move approved
//!    (failover and sdwan decide it, by the survivors), and — when it has
//!    none yet — cluster C's server bootstraps (sdwan and provisioner).
//! 4. The killed replicas start again and take about half back; cluster B's
//!    VIP moves again, decided by whoever owns the partition now.
//! 5. Exactly once: in the whole log, no cause has two decisions of the
//!    same kind among the proposals, promotions, VIP allocations, cluster
//!    bootstraps and activations, join tokens and node registrations.

use crate::failover::move_vip;
use crate::runbook::{wait_active, Clusters};
use crate::support::{ms, Rig, STEP};
use anyhow::{ensure, Context as _};
use futures::StreamExt;
use powernode_runtime::partition::lease::LEASE_BUCKET;
use powernode_runtime::partition::partition_of;
use powernode_tests::lifecycle_support::wait_until;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Instant;

/// Partitions per service (compose.yaml's `--partitions`).
const PARTITIONS: u32 = 16;

/// The partitioned services and their replicas (cursor names; the
/// container is `pn-<name>`).
const SERVICES: [(&str, [&str; 2]); 4] = [
    ("provisioner", ["provisioner-1", "provisioner-2"]),
    ("sdwan", ["sdwan", "sdwan-2"]),
    ("failover", ["failover-1", "failover-2"]),
    ("skills", ["skills", "skills-2"]),
];

/// Decisions that must be made once per cause.
const ONCE: [&str; 7] = [
    "system.sdwan.failover.proposed",
    "system.sdwan.virtual_ip.promoted",
    "system.sdwan.virtual_ip.allocated",
    "system.k3s.cluster.bootstrapped",
    "system.k3s.cluster.activated",
    "system.k3s.handshake.join_token_issued",
    "system.k3s.node.registered",
];

/// Runs the scenario.
pub async fn run(rig: &mut Rig, clusters: &Clusters) -> anyhow::Result<Value> {
    let account = rig.fleet["account_id"]
        .as_str()
        .context("fleet.json: account_id")?
        .to_string();
    let p = partition_of(&account, PARTITIONS);

    // 1. Split about evenly.
    let mut split = serde_json::Map::new();
    let mut owners = BTreeMap::new();
    for (service, replicas) in SERVICES {
        let held = settled(rig, service, &replicas, 6..=10).await?;
        owners.insert(service, held[&p].clone());
        split.insert(service.into(), json!(counts(&held)));
    }

    // 2. The owners of the account's partition die.
    let killed_at = Instant::now();
    for owner in owners.values() {
        rig.docker(&["kill", &format!("pn-{owner}")])?;
    }
    let mut handoff = serde_json::Map::new();
    for (service, replicas) in SERVICES {
        let survivor = other(&replicas, &owners[service]);
        settled(rig, service, &[survivor], 16..=16).await?;
        handoff.insert(
            service.into(),
            json!({ "killed": owners[service], "to": survivor, "all_16_after_ms": ms(killed_at) }),
        );
    }

    // 3. Work while they are down.
    let moved_down = move_vip(rig, &clusters.b, None).await?;
    let bootstrapped =
        match rig.instance(&rig.agent("c-server-1").instance_id).await?["cluster_id"].as_str() {
            Some(_) => json!("cluster C was formed by an earlier scenario"),
            None => {
                let t = Instant::now();
                rig.assign("c-server-1", "k3s-server", None).await?;
                rig.wait_phase("c-server-1", "ready").await?;
                let c = rig.cluster_of("c-server-1").await?;
                wait_active(rig, &c).await?;
                json!({ "cluster": c, "assign_to_active_ms": ms(t) })
            }
        };

    // 4. Back: each takes about half again.
    let restarted_at = Instant::now();
    for owner in owners.values() {
        rig.docker(&["start", &format!("pn-{owner}")])?;
    }
    let mut rebalanced = serde_json::Map::new();
    for (service, replicas) in SERVICES {
        let held = settled(rig, service, &replicas, 6..=10).await?;
        rebalanced.insert(
            service.into(),
            json!({ "split": counts(&held), "after_ms": ms(restarted_at), "account_partition_owner": held[&p] }),
        );
    }
    let moved_up = move_vip(rig, &clusters.b, None).await?;

    // 5. Exactly once.
    let decided = once_per_cause(rig).await?;
    Ok(json!({
        "account_partition": p,
        "split": split,
        "handoff": handoff,
        "vip_moved_while_down": moved_down,
        "cluster_c": bootstrapped,
        "rebalanced": rebalanced,
        "vip_moved_after": moved_up,
        "decisions_once_per_cause": decided,
    }))
}

fn other<'a>(replicas: &[&'a str; 2], owner: &str) -> &'a str {
    if replicas[0] == owner {
        replicas[1]
    } else {
        replicas[0]
    }
}

/// Partitions per holder.
fn counts(held: &BTreeMap<u32, String>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for holder in held.values() {
        *out.entry(holder.clone()).or_insert(0) += 1;
    }
    out
}

/// The holder of each of `service`'s partitions, from the lease bucket.
async fn leases(rig: &Rig, service: &str) -> Result<BTreeMap<u32, String>, String> {
    let js = async_nats::jetstream::new(rig.nats.clone());
    let kv = js
        .get_key_value(LEASE_BUCKET)
        .await
        .map_err(|e| e.to_string())?;
    let prefix = format!("lease.{service}.");
    let mut keys = kv.keys().await.map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    while let Some(key) = keys.next().await {
        let key = key.map_err(|e| e.to_string())?;
        let Some(p) = key.strip_prefix(&prefix).and_then(|p| p.parse().ok()) else {
            continue;
        };
        if let Some(v) = kv.get(&key).await.map_err(|e| e.to_string())? {
            out.insert(p, String::from_utf8_lossy(&v).to_string());
        }
    }
    Ok(out)
}

/// Waits until all partitions of `service` are held, by `replicas` only,
/// each holding a count in `each`.
async fn settled(
    rig: &Rig,
    service: &str,
    replicas: &[&str],
    each: std::ops::RangeInclusive<usize>,
) -> anyhow::Result<BTreeMap<u32, String>> {
    wait_until(
        STEP,
        &format!("{service}'s partitions held by {replicas:?}, {each:?} each"),
        || async {
            let held = leases(rig, service).await?;
            let n = counts(&held);
            let ok = held.len() == PARTITIONS as usize
                && replicas
                    .iter()
                    .all(|r| each.contains(n.get(*r).unwrap_or(&0)))
                && n.keys().all(|h| replicas.contains(&h.as_str()));
            if ok {
                Ok(held)
            } else {
                Err(format!("{n:?}"))
            }
        },
    )
    .await
}

/// Counts the decisions of [`ONCE`] per cause; fails on a cause decided twice.
async fn once_per_cause(rig: &Rig) -> anyhow::Result<Value> {
    let mut per_cause: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
    for e in rig.events().await? {
        let kind = e["kind"].as_str().unwrap_or_default();
        if !ONCE.contains(&kind) {
            continue;
        }
        let cause = e["causation_id"].as_str().unwrap_or("(none)").to_string();
        per_cause
            .entry((kind.to_string(), cause))
            .or_default()
            .push(e["seq"].as_u64().unwrap_or(0));
    }
    let twice: Vec<_> = per_cause.iter().filter(|(_, s)| s.len() > 1).collect();
    ensure!(twice.is_empty(), "decided more than once: {twice:?}");
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    for (kind, _) in per_cause.keys() {
        *by_kind.entry(kind.clone()).or_insert(0) += 1;
    }
    Ok(json!(by_kind))
}
