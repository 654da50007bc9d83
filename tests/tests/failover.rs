//! VIP failover (issue 4) end to end: a real nats-server, every service,
//! real `powernode-agent` processes (simulated runtime) killed with SIGKILL
//! and restarted, and a second failover replica as its own process.
//!
//! `cargo nextest run -p powernode-tests --test failover` (add
//! `--no-capture` to see the measured timings).

use anyhow::{ensure, Context as _};
use powernode_events::EventPayload;
use powernode_protocol::HeldVip;
use powernode_tests::failover_replica::{durables, wait_cursor_past, ServeProcess};
use powernode_tests::failover_support::*;
use powernode_tests::lifecycle_support::{error_code, str_at, OPERATOR_PERMISSIONS};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const PROMOTED: &str = "system.sdwan.virtual_ip.promoted";
const APPLIED: &str = "system.sdwan.virtual_ip.applied";

/// The one promotion of `vip_id` in the account; fails naming what it saw.
async fn one_promotion(f: &Fleet, vip_id: &str) -> anyhow::Result<Value> {
    let promoted = vip_events(&f.op, PROMOTED, vip_id).await?;
    ensure!(promoted.len() == 1, "exactly one promotion: {promoted:?}");
    Ok(promoted[0]["payload"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_approval_promotes_the_approved_candidate_and_the_old_holder_releases(
) -> anyhow::Result<()> {
    let f = Fleet::start(config(FailoverPolicy::RequireApproval)).await?;
    let mut c = f.cluster("prod", 2, 0).await?;
    let (s1, s2) = (c.servers[0].peer.clone(), c.servers[1].peer.clone());
    let v = c.vip().await?;
    ensure!(
        v["holders"] == json!([c.servers[0].instance_id()])
            && v["holder_silent"] == false
            && v["split"] == false,
        "{v}"
    );

    // The holder's agent dies: silence, then a proposal waiting for an operator.
    let killed = Instant::now();
    f.kill(&mut c.servers[0]);
    let silent = wait_event(&f.op, SILENT, &c.vip_id, |e| {
        e["payload"]["holder_peer_id"] == s1.as_str()
    })
    .await?;
    println!("kill -9 → {SILENT}: {:?}", killed.elapsed());
    ensure!(silent["payload"]["threshold_ms"] == SILENCE_MS, "{silent}");
    let a = wait_approval(&f.op, "requested").await?;
    println!("kill -9 → approval requested: {:?}", killed.elapsed());
    let id = str_at(&a, "/id")?;
    ensure!(
        a["action"] == "vip_promotion"
            && a["subject"] == format!("virtual_ip/{}", c.vip_id)
            && a["proposed_peer"] == s2.as_str()
            && a["current_holder"] == s1.as_str()
            && a["generation"] == 1,
        "{a}"
    );
    let candidates = a["candidates"].as_array().cloned().unwrap_or_default();
    ensure!(
        candidates.len() == 1
            && candidates[0]["peer"] == s2.as_str()
            && candidates[0]["instance_id"] == c.servers[1].instance_id()
            && candidates[0]["score"].as_f64().is_some_and(|s| s > 0.5)
            && candidates[0]["reasons"]
                .as_array()
                .is_some_and(|r| !r.is_empty()),
        "one scored candidate, the second server: {a}"
    );
    let waiting = c.vip().await?;
    ensure!(
        waiting["generation"] == 1
            && waiting["holder_peer_id"] == s1.as_str()
            && waiting["holder_silent"] == true
            && waiting["pending_approval"] == id.as_str(),
        "nothing moves before the approval: {waiting}"
    );
    ensure!(vip_events(&f.op, PROMOTED, &c.vip_id).await?.is_empty());

    // Approved: generation 2 goes to the second server, whose agent applies it.
    let approved_at = Instant::now();
    let r =
        f.op.ok("system_approve", json!({ "approval_id": id }))
            .await?;
    ensure!(r["approval"]["status"] == "granted", "{r}");
    let v = c.wait_held(&c.servers[1], 2).await?;
    println!(
        "approve → new holder applied generation 2: {:?}",
        approved_at.elapsed()
    );
    ensure!(
        v["holders"] == json!([c.servers[1].instance_id()]) && v["holder_silent"] == false,
        "{v}"
    );
    let p = one_promotion(&f, &c.vip_id).await?;
    ensure!(
        p["generation"] == 2
            && p["from_peer_id"] == s1.as_str()
            && p["to_peer_id"] == s2.as_str()
            && p["to_instance_id"] == c.servers[1].instance_id()
            && p["reason"] == "approved_failover"
            && p["approval_id"] == id.as_str(),
        "{p}"
    );
    ensure!(approvals(&f.op, "granted").await?.len() == 1);
    let v = c.vip().await?;
    ensure!(
        v["applied_generations"] == json!({ s1.clone(): 1, s2.clone(): 2 })
            && v["stale_holders"] == json!([s1])
            && v["split"] == false,
        "the dead old holder is last known at generation 1, stale: {v}"
    );

    // The old holder's agent comes back with its state: it still holds
    // generation 1, is told it is not the holder, and releases.
    let restarted = Instant::now();
    f.restart(&mut c.servers[0])?;
    let released = wait_event(&f.op, APPLIED, &c.vip_id, |e| {
        e["payload"]["peer_id"] == s1.as_str() && e["payload"]["held"] == false
    })
    .await
    .with_context(|| c.servers[0].member.agent.log_tail(15))?;
    ensure!(
        released["payload"]["generation"] == 1
            && released["payload"]["instance_id"] == c.servers[0].instance_id(),
        "{released}"
    );
    let v = c
        .wait_vip("only the new holder applied", |v| {
            v["applied_generations"] == json!({ s2.clone(): 2 })
        })
        .await?;
    println!("restart → old holder released: {:?}", restarted.elapsed());
    ensure!(v["split"] == false && v["generation"] == 2, "{v}");
    let state = c.servers[0].member.agent.state()?;
    ensure!(
        state["vips"][&c.vip_id]["held_generation"].is_null(),
        "the old holder's agent state holds nothing: {}",
        state["vips"]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_policy_promotes_without_approval() -> anyhow::Result<()> {
    let f = Fleet::start(config(FailoverPolicy::Auto)).await?;
    let mut c = f.cluster("prod", 2, 0).await?;
    let (s1, s2) = (c.servers[0].peer.clone(), c.servers[1].peer.clone());
    let killed = Instant::now();
    f.kill(&mut c.servers[0]);
    c.wait_held(&c.servers[1], 2).await?;
    let took = killed.elapsed();
    println!("auto: kill -9 → new holder applied generation 2: {took:?}");
    ensure!(
        took < Duration::from_secs(10),
        "auto failover took {took:?}"
    );
    let p = one_promotion(&f, &c.vip_id).await?;
    ensure!(
        p["from_peer_id"] == s1.as_str()
            && p["to_peer_id"] == s2.as_str()
            && p["generation"] == 2
            && p["reason"] == "auto_failover"
            && p["approval_id"].is_null(),
        "{p}"
    );
    let silent = vip_events(&f.op, SILENT, &c.vip_id).await?;
    let promoted = vip_events(&f.op, PROMOTED, &c.vip_id).await?;
    ensure!(
        silent.len() == 1 && silent[0]["seq"].as_u64() < promoted[0]["seq"].as_u64(),
        "one silence, before the promotion: {silent:?}"
    );
    f.p.settle().await?;
    ensure!(
        approvals(&f.op, "all").await?.is_empty()
            && f.op.events("system.approval").await?.is_empty()
            && f.op.events("system.sdwan.failover").await?.is_empty(),
        "no proposal, no approval under auto"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_drain_moves_the_vip_without_approval() -> anyhow::Result<()> {
    let f = Fleet::start(config(FailoverPolicy::RequireApproval)).await?;
    let c = f.cluster("prod", 2, 0).await?;
    let (s1, s2) = (c.servers[0].peer.clone(), c.servers[1].peer.clone());
    let started = Instant::now();
    let d =
        f.op.ok(
            "system_drain_instance",
            json!({ "id": c.servers[0].instance_id() }),
        )
        .await?;
    ensure!(d["changed"] == true, "{d}");
    c.wait_held(&c.servers[1], 2).await?;
    let moved = started.elapsed();
    c.wait_vip("the drained holder released", |v| {
        v["applied_generations"] == json!({ s2.clone(): 2 })
    })
    .await?;
    let handed_over = started.elapsed();
    println!(
        "drain → new holder applied generation 2: {moved:?}; old holder released: {handed_over:?}"
    );
    ensure!(
        moved < Duration::from_secs(10),
        "a planned drain moved the VIP in {moved:?}"
    );
    let p = one_promotion(&f, &c.vip_id).await?;
    ensure!(
        p["from_peer_id"] == s1.as_str()
            && p["to_peer_id"] == s2.as_str()
            && p["reason"] == "drain"
            && p["approval_id"].is_null(),
        "{p}"
    );
    ensure!(
        approvals(&f.op, "all").await?.is_empty()
            && vip_events(&f.op, SILENT, &c.vip_id).await?.is_empty(),
        "no approval and no silence for a planned drain"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_proposal_promotes_nothing() -> anyhow::Result<()> {
    let f = Fleet::start(config(FailoverPolicy::RequireApproval)).await?;
    let mut c = f.cluster("prod", 2, 0).await?;
    let s1 = c.servers[0].peer.clone();
    f.kill(&mut c.servers[0]);
    let a = wait_approval(&f.op, "requested").await?;
    let id = str_at(&a, "/id")?;

    let (none, blank) = f
        .unchanged("rejections without a reason", async {
            (
                f.op.action("system_reject", json!({ "approval_id": id }))
                    .await,
                f.op.action(
                    "system_reject",
                    json!({ "approval_id": id, "reason": "  " }),
                )
                .await,
            )
        })
        .await?;
    for r in [&none, &blank] {
        ensure!(
            refusal(r) == (400, "invalid_arguments".to_string()),
            "a rejection needs a reason: {r:?}"
        );
    }

    let reason = "holder is only rebooting";
    let r =
        f.op.ok(
            "system_reject",
            json!({ "approval_id": id, "reason": reason }),
        )
        .await?;
    ensure!(
        r["approval"]["status"] == "rejected" && r["approval"]["reason"] == reason,
        "{r}"
    );
    f.p.settle().await?;
    let v = c.vip().await?;
    ensure!(
        v["generation"] == 1
            && v["holder_peer_id"] == s1.as_str()
            && v["pending_approval"].is_null(),
        "nothing promoted: {v}"
    );
    ensure!(vip_events(&f.op, PROMOTED, &c.vip_id).await?.is_empty());
    let rejected = approvals(&f.op, "rejected").await?;
    ensure!(
        rejected.len() == 1 && rejected[0]["id"] == id.as_str(),
        "{rejected:?}"
    );
    ensure!(approvals(&f.op, "requested").await?.is_empty());
    let again = f
        .unchanged(
            "approving a rejected request",
            f.op.action("system_approve", json!({ "approval_id": id })),
        )
        .await?;
    ensure!(
        refusal(&again) == (409, "already_decided".to_string()),
        "{again:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecided_approval_expires_and_cannot_be_approved_afterwards() -> anyhow::Result<()> {
    let f = Fleet::start(FailoverConfig {
        approval_ttl_secs: 1,
        ..config(FailoverPolicy::RequireApproval)
    })
    .await?;
    let mut c = f.cluster("prod", 2, 0).await?;
    let s1 = c.servers[0].peer.clone();
    let killed = Instant::now();
    f.kill(&mut c.servers[0]);
    let a = wait_approval(&f.op, "expired").await?;
    println!("kill -9 → approval expired: {:?}", killed.elapsed());
    let id = str_at(&a, "/id")?;
    let expired = events_of(&f.op, "system.approval.expired", |e| {
        e["payload"]["approval_id"] == id.as_str()
    })
    .await?;
    ensure!(expired.len() == 1, "one expiry: {expired:?}");

    let late = f
        .unchanged(
            "approving an expired request",
            f.op.action("system_approve", json!({ "approval_id": id })),
        )
        .await?;
    ensure!(refusal(&late) == (409, "expired".to_string()), "{late:?}");
    let v = c.vip().await?;
    ensure!(
        v["generation"] == 1 && v["holder_peer_id"] == s1.as_str(),
        "nothing promoted: {v}"
    );
    ensure!(vip_events(&f.op, PROMOTED, &c.vip_id).await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_lists_scored_candidates_and_appends_nothing() -> anyhow::Result<()> {
    let f = Fleet::start(config(FailoverPolicy::RequireApproval)).await?;
    let c = f.cluster("prod", 2, 0).await?;
    let (s1, s2) = (c.servers[0].peer.clone(), c.servers[1].peer.clone());
    let args = json!({ "virtual_ip_id": c.vip_id, "dry_run": true });
    let d = f
        .unchanged(
            "a dry run",
            f.op.ok("system_sdwan_failover_virtual_ip", args.clone()),
        )
        .await??;
    ensure!(
        d["resolved"] == false
            && d["dry_run"] == true
            && d["current_holder"] == s1.as_str()
            && d["generation"] == 1,
        "{d}"
    );
    let candidates = d["candidates"].as_array().cloned().unwrap_or_default();
    ensure!(
        candidates.len() == 1
            && candidates[0]["peer"] == s2.as_str()
            && candidates[0]["instance_id"] == c.servers[1].instance_id()
            && candidates[0]["score"].as_f64().is_some_and(|s| s >= 0.8)
            && candidates[0]["heard_within_threshold"] == true
            && candidates[0]["reasons"]
                .as_array()
                .is_some_and(|r| !r.is_empty()),
        "the live second server, scored: {d}"
    );

    // A dry run needs no failover permission; a forced one does.
    let lifecycle_only = f.colleague(OPERATOR_PERMISSIONS).await?;
    let (dry, forced) = f
        .unchanged("an operator without the failover permission", async {
            (
                lifecycle_only
                    .action("system_sdwan_failover_virtual_ip", args.clone())
                    .await,
                lifecycle_only
                    .action(
                        "system_sdwan_failover_virtual_ip",
                        json!({ "virtual_ip_id": c.vip_id }),
                    )
                    .await,
            )
        })
        .await?;
    ensure!(dry.is_ok(), "{dry:?}");
    ensure!(refusal(&forced).0 == 403, "{forced:?}");
    ensure!(c.vip().await?["generation"] == 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_server_cluster_has_no_candidate() -> anyhow::Result<()> {
    let f = Fleet::start(config(FailoverPolicy::RequireApproval)).await?;
    let mut c = f.cluster("solo", 1, 0).await?;
    let s1 = c.servers[0].peer.clone();
    f.kill(&mut c.servers[0]);
    let nc = wait_event(
        &f.op,
        "system.sdwan.failover.no_candidate",
        &c.vip_id,
        |_| true,
    )
    .await?;
    ensure!(nc["payload"]["holder_peer_id"] == s1.as_str(), "{nc}");
    f.p.settle().await?;
    ensure!(vip_events(&f.op, SILENT, &c.vip_id).await?.len() == 1);
    ensure!(vip_events(&f.op, PROMOTED, &c.vip_id).await?.is_empty());
    ensure!(
        approvals(&f.op, "all").await?.is_empty()
            && f.op.events("system.approval").await?.is_empty()
            && f.op
                .events("system.sdwan.failover.proposed")
                .await?
                .is_empty(),
        "no proposal, no approval"
    );
    let v = c.vip().await?;
    ensure!(
        v["generation"] == 1 && v["holder_peer_id"] == s1.as_str() && v["holder_silent"] == true,
        "{v}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_appends_nothing() -> anyhow::Result<()> {
    let f = Fleet::start(config(FailoverPolicy::RequireApproval)).await?;
    let mut prod = f.cluster("prod", 2, 1).await?;
    let staging = f.cluster("staging", 1, 0).await?;
    let other = f.p.operator_with("other", &failover_permissions()).await?;
    let failover = |to: &str| {
        f.op.action(
            "system_sdwan_failover_virtual_ip",
            json!({ "virtual_ip_id": prod.vip_id, "to_peer_id": to }),
        )
    };
    let (unknown, to_worker, to_staging) = f
        .unchanged("refused requests", async {
            (
                f.op.action(
                    "system_approve",
                    json!({ "approval_id": "appr-000000000000" }),
                )
                .await,
                failover(&prod.workers[0].peer).await,
                failover(&staging.servers[0].peer).await,
            )
        })
        .await?;
    ensure!(
        refusal(&unknown) == (404, "not_found".to_string()),
        "approving an unknown id: {unknown:?}"
    );
    for (what, r) in [
        ("a worker's peer", &to_worker),
        ("another cluster's server", &to_staging),
    ] {
        ensure!(
            refusal(r) == (422, "not_a_candidate".to_string()),
            "forced failover to {what}: {r:?}"
        );
    }

    // Heartbeats signed with another key are refused and keep nobody alive.
    let holder = prod.servers[0].instance_id().to_string();
    let vip = prod.vip().await?;
    let held = vec![HeldVip {
        virtual_ip_id: prod.vip_id.clone(),
        vip: str_at(&vip, "/vip")?,
        generation: 1,
    }];
    f.kill(&mut prod.servers[0]);
    let forged = ForgedBeats::start(&f.p.nats_url(), &holder, held).await?;
    wait_event(&f.op, SILENT, &prod.vip_id, |e| {
        e["payload"]["holder_peer_id"] == prod.servers[0].peer.as_str()
    })
    .await?;
    let replies = forged.replies();
    drop(forged);
    ensure!(
        !replies.is_empty() && replies.iter().all(|r| error_code(r) == Ok("bad_signature")),
        "forged heartbeats are refused: {replies:?}"
    );
    let v = prod.vip().await?;
    ensure!(
        v["applied_generations"] == json!({ prod.servers[0].peer.clone(): 1 }),
        "a forged beat's held VIPs are not recorded: {v}"
    );

    // Another account neither sees nor decides this account's approval.
    let a = wait_approval(&f.op, "requested").await?;
    let id = str_at(&a, "/id")?;
    let (approve, reject, listed) = f
        .unchanged("another account deciding", async {
            (
                other
                    .action("system_approve", json!({ "approval_id": id }))
                    .await,
                other
                    .action(
                        "system_reject",
                        json!({ "approval_id": id, "reason": "not mine" }),
                    )
                    .await,
                approvals(&other, "all").await,
            )
        })
        .await?;
    for r in [&approve, &reject] {
        ensure!(
            refusal(r) == (404, "not_found".to_string()),
            "another account's approval: {r:?}"
        );
    }
    ensure!(listed?.is_empty(), "another account lists no approval");
    ensure!(approvals(&f.op, "requested").await?.len() == 1);

    // A decommissioned cluster's VIP cannot be forced anywhere.
    f.op.ok(
        "kubernetes_decommission_cluster",
        json!({ "cluster_id": staging.id }),
    )
    .await?;
    staging
        .wait_vip("released", |v| v["status"] == "released")
        .await?;
    let forced = f
        .unchanged(
            "forcing a decommissioned cluster's VIP",
            f.op.action(
                "system_sdwan_failover_virtual_ip",
                json!({ "virtual_ip_id": staging.vip_id }),
            ),
        )
        .await?;
    ensure!(refusal(&forced).0 == 409, "{forced:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_failover_replicas_land_one_promotion() -> anyhow::Result<()> {
    let cfg = config(FailoverPolicy::Auto);
    let f = Fleet::start(cfg.clone()).await?;
    let mut c = f.cluster("prod", 2, 0).await?;
    let url = f.p.nats_url();
    let mut replica =
        ServeProcess::spawn(&url, "failover", "b", &f.p.scratch_path("replica-b"), &cfg)?;
    let now = f.p.settle().await?;
    wait_cursor_past(&url, &replica.durable, now)
        .await
        .with_context(|| format!("replica b:\n{}", replica.log_tail(20)))?;
    let names = durables(&url).await?;
    ensure!(
        names.contains(&"failover".to_string()) && names.contains(&replica.durable),
        "each replica reads the log with its own durable cursor: {names:?}"
    );

    f.kill(&mut c.servers[0]);
    c.wait_held(&c.servers[1], 2).await?;
    let last = f.p.settle().await?;
    for durable in ["failover", replica.durable.as_str()] {
        wait_cursor_past(&url, durable, last)
            .await
            .with_context(|| format!("replica b:\n{}", replica.log_tail(20)))?;
    }
    ensure!(
        replica.is_running(),
        "replica b died:\n{}",
        replica.log_tail(20)
    );
    let silences = vip_events(&f.op, SILENT, &c.vip_id).await?;
    ensure!(silences.len() == 1, "{silences:?}");
    let generation_2: Vec<_> =
        f.p.log_events(PROMOTED)
            .await?
            .into_iter()
            .filter(|(_, e)| {
                matches!(&e.payload, EventPayload::VirtualIpPromoted(p)
                    if p.virtual_ip_id == c.vip_id && p.generation == 2)
            })
            .collect();
    ensure!(
        generation_2.len() == 1,
        "exactly one promotion to generation 2 in the log: {generation_2:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flap_damping_suppresses_a_second_promotion_within_the_cooldown() -> anyhow::Result<()> {
    let f = Fleet::start(FailoverConfig {
        cooldown_secs: 600,
        ..config(FailoverPolicy::Auto)
    })
    .await?;
    let mut c = f.cluster("prod", 3, 0).await?;
    f.kill(&mut c.servers[0]);
    let first = c
        .wait_vip("promoted to generation 2", |v| v["generation"] == 2)
        .await?;
    let new = c
        .servers
        .iter()
        .position(|s| first["holder_peer_id"] == s.peer.as_str())
        .context("the new holder is one of the servers")?;
    let spare = 3 - new;
    c.wait_held(&c.servers[new], 2).await?;

    f.kill(&mut c.servers[new]);
    let s = wait_event(&f.op, "system.sdwan.failover.suppressed", &c.vip_id, |_| {
        true
    })
    .await?;
    ensure!(
        s["payload"]["holder_peer_id"] == c.servers[new].peer.as_str()
            && s["payload"]["candidate_peer_id"] == c.servers[spare].peer.as_str()
            && s["payload"]["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("cooldown")),
        "{s}"
    );
    f.p.settle().await?;
    one_promotion(&f, &c.vip_id).await?;
    let v = c.vip().await?;
    ensure!(
        v["generation"] == 2 && v["holder_peer_id"] == c.servers[new].peer.as_str(),
        "{v}"
    );
    Ok(())
}

/// A two-server cluster fails over and back: the server that lost the VIP
/// is still a ready k3s-server of the cluster, so once its agent is back it
/// is a failover candidate again, and when the new holder dies the VIP
/// returns to it (generation 3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_former_holder_becomes_a_candidate_again_and_takes_the_vip_back() -> anyhow::Result<()>
{
    let f = Fleet::start(FailoverConfig {
        cooldown_secs: 0,
        ..config(FailoverPolicy::Auto)
    })
    .await?;
    let mut c = f.cluster("prod", 2, 0).await?;
    let (s1, s2) = (c.servers[0].peer.clone(), c.servers[1].peer.clone());
    f.kill(&mut c.servers[0]);
    c.wait_held(&c.servers[1], 2).await?;
    f.restart(&mut c.servers[0])?;
    c.wait_vip(
        "the former holder released it and is a failover candidate again",
        |v| {
            v["applied_generations"] == json!({ s2.clone(): 2 })
                && v["failover_holder_peer_ids"] == json!([s1])
        },
    )
    .await?;
    f.kill(&mut c.servers[1]);
    c.wait_held(&c.servers[0], 3).await?;
    Ok(())
}

/// With every default (silence threshold, agent heartbeat interval), a
/// holder whose agent runs is never taken for silent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_defaults_a_live_holder_is_not_silent() -> anyhow::Result<()> {
    let f = Fleet::start_with(FailoverConfig::default(), None).await?;
    let c = f.cluster("prod", 1, 0).await?;
    c.never_silent_for(
        Duration::from_secs(8),
        "a live holder with the default agent heartbeat stays heard",
    )
    .await
}

/// A second API replica (its intake shares the agents' requests through
/// the queue group) does not make the sensor of the first one miss the
/// beats it did not answer: live holders stay heard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_intake_does_not_hide_heartbeats_from_the_sensor() -> anyhow::Result<()> {
    let cfg = FailoverConfig {
        silence_threshold_ms: 500,
        ..config(FailoverPolicy::Auto)
    };
    let f = Fleet::start_with(cfg.clone(), Some(100)).await?;
    let c = f.cluster("prod", 2, 0).await?;
    let api_b = ServeProcess::spawn(
        &f.p.nats_url(),
        "api",
        "b",
        &f.p.scratch_path("api-b"),
        &cfg,
    )?;
    api_b.wait_output("agent intake listening").await?;
    c.never_silent_for(
        Duration::from_secs(6),
        "live holders stay heard with two intakes",
    )
    .await?;
    let v = c.vip().await?;
    ensure!(v["generation"] == 1, "{v}");
    Ok(())
}
