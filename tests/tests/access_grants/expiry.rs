//! Expiry: once per grant, across a restart and two sdwan replicas.

use super::world::*;
use anyhow::ensure;
use powernode_events::payloads::sdwan::AccessGrantEnd;
use powernode_events::{Envelope, EventPayload};
use serde_json::json;
use std::time::{Duration, Instant};

/// Counts the `Expired` ends of `grant_id` in the log.
async fn expiries(w: &World, grant_id: &str) -> anyhow::Result<usize> {
    let mut n = 0;
    for r in w.records().await? {
        if r.kind() != "system.sdwan.access_grant.revoked" {
            continue;
        }
        if let EventPayload::AccessGrantRevoked(p) = Envelope::decode(&r.bytes)?.payload {
            if p.grant_id == grant_id {
                ensure!(p.reason == AccessGrantEnd::Expired, "{p:?}");
                n += 1;
            }
        }
    }
    Ok(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_expire_once_across_a_restart_and_two_replicas() -> anyhow::Result<()> {
    let mut w = world().await?;
    let net_id = s(&w.network["id"]);
    let gw_instance = s(&w.peers[0]["instance_id"]);
    w.register_key(&gw_instance, "10.99.0.2:51820").await?;
    // A second sdwan replica on the same log: both time grants out.
    let replica_dir = tempfile::tempdir()?;
    let replica = start(&w.log, replica_dir.path(), Some("b")).await?;

    let short = w
        .ok(
            "system_sdwan_create_access_grant",
            json!({"network_id": net_id, "name": "short", "ttl_secs": 1}),
        )
        .await?;
    let id = s(&short["grant"]["id"]);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let l = w.ok("system_sdwan_list_access_grants", json!({})).await?;
        if expiries(&w, &id).await? == 1 {
            ensure!(l["grants"][0]["status"] == "expired", "{l}");
            break;
        }
        ensure!(Instant::now() < deadline, "the grant never expired: {l}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Expired: its peer is gone from the gateway.
    let gw_config = w.peer_config(0).await?;
    ensure!(!gw_config.peers.iter().any(|p| p.id == id), "{gw_config:?}");
    // Revoking an expired grant: refused, nothing appended.
    let before = w.last_seq().await?;
    let r = w
        .call("system_sdwan_revoke_access_grant", json!({"grant_id": id}))
        .await?;
    ensure!(
        r.status == 409 && r.body["error"]["code"] == "expired",
        "{:?}",
        r.body
    );
    ensure!(
        w.last_seq().await? == before,
        "revoking an expired grant appended"
    );

    // Restart: a grant falls due while no node runs; it expires on start.
    let later = w
        .ok(
            "system_sdwan_create_access_grant",
            json!({"network_id": net_id, "name": "later", "ttl_secs": 4}),
        )
        .await?;
    let later_id = s(&later["grant"]["id"]);
    let mut replica = replica;
    replica.stop().await?;
    w.node.stop().await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    ensure!(
        expiries(&w, &later_id).await? == 0,
        "expired while nothing ran"
    );
    let dir = w._dir.path().to_path_buf();
    w.node = start(&w.log, &dir, None).await?;
    let deadline = Instant::now() + Duration::from_secs(15);
    while expiries(&w, &later_id).await? == 0 {
        ensure!(
            Instant::now() < deadline,
            "the overdue grant never expired after the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Settled: still exactly one end each.
    tokio::time::sleep(Duration::from_secs(2)).await;
    ensure!(expiries(&w, &id).await? == 1 && expiries(&w, &later_id).await? == 1);
    let l = w.ok("system_sdwan_list_access_grants", json!({})).await?;
    ensure!(
        l["grants"]
            .as_array()
            .is_some_and(|g| g.iter().all(|g| g["status"] == "expired")),
        "{l}"
    );
    w.node.stop().await
}
