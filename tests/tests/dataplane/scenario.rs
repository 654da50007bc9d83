//! Issue 15's end-to-end test: a prod cluster (2 servers + 1 worker) and a
//! staging cluster, each instance in its own namespace with its agent's
//! WireGuard interface; an operator namespace that imports an access grant
//! with the real `wg-quick` and runs the real `kubectl` through the VIP
//! across a failover, a drain and a revocation.

use crate::steps::{
    blocking, drain_loses_no_request, kubectl_nodes, platform_node_names,
    pod_routes_are_on_the_right_peers, staging_answers_too, wait_answer, Revocation,
};
use anyhow::{ensure, Context as _};
use powernode_tests::failover_support::{approvals, vip_events, FailoverPolicy, SILENT};
use powernode_tests::lifecycle_support::{str_at, wait_until, AGENT, SERVER, WAIT};
use powernode_tests::netns::fleet::DataPlane;
use powernode_tests::netns::probe::{longest_outage, probe_once, ApiTarget, ProbeLoop};
use powernode_tests::netns::wireguard::{with_private_key, KeyPair, WgQuick};
use serde_json::json;
use std::time::{Duration, Instant};

/// The network's pod prefix: every node gets a /24 of it.
pub(crate) const POD_PREFIX: &str = "10.42.0.0/16";
/// The operator's probe loop interval.
pub(crate) const PROBE_EVERY: Duration = Duration::from_millis(50);
/// How long one probe may take.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one probe may take while measuring an outage (a SYN lost to a
/// dead holder is retransmitted only after a second: start afresh instead).
const OUTAGE_PROBE_TIMEOUT: Duration = Duration::from_millis(250);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_reaches_the_vip_through_an_access_grant_across_failover_drain_and_revocation(
) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let d = DataPlane::start(FailoverPolicy::RequireApproval, POD_PREFIX).await?;
    let (mut s1, prod) = d.bootstrap("prod-s1").await?;
    let s2 = d.join("prod-s2", SERVER, &prod).await?;
    let w1 = d.join("prod-w1", AGENT, &prod).await?;
    let (st1, staging) = d.bootstrap("staging-s1").await?;
    let v = d
        .wait_vip(
            &prod,
            "prod's VIP held by prod-s1 at generation 1, prod-s2 its candidate",
            |v| {
                v["holder_peer_id"] == s1.peer.as_str()
                    && v["generation"] == 1
                    && v["applied_generations"][&s1.peer] == 1
                    && v["failover_holder_peer_ids"] == json!([s2.peer])
            },
        )
        .await?;
    let vip = str_at(&v, "/vip")?;
    d.wait_in_sync(&[&s1, &s2, &w1, &st1]).await?;
    println!(
        "4 agents in 4 namespaces, 2 clusters, configs applied: {:?}",
        t0.elapsed()
    );

    pod_routes_are_on_the_right_peers(&d, &[&s1, &s2, &w1, &st1]).await?;

    // The operator: a key made on its machine, a grant, the real wg-quick.
    let dir = d.p.scratch_path("operator");
    std::fs::create_dir_all(&dir)?;
    let laptop = d.underlay.host("operator")?;
    let key = KeyPair::generate()?;
    let g = d
        .op
        .ok(
            "system_sdwan_create_access_grant",
            json!({ "network_id": d.net, "name": "laptop", "public_key": key.public, "ttl_secs": 3600 }),
        )
        .await?;
    let grant_id = str_at(&g, "/grant/id")?;
    ensure!(
        g["grant"]["gateway_peer_id"] == w1.peer.as_str(),
        "the gateway is the worker (no VIP duty): {g}"
    );
    let config = with_private_key(&str_at(&g, "/wireguard_config")?, &key.private);
    ensure!(
        !config.contains(&s1.host.addr.to_string()) && !config.contains(&s2.host.addr.to_string()),
        "the grant's config names no VIP holder:\n{}",
        str_at(&g, "/wireguard_config")?
    );
    let _quick = WgQuick::up(&laptop, "laptop", &config, &dir)?;
    d.wait_in_sync(&[&s1, &s2, &w1, &st1]).await?;

    // kubectl through the VIP: prod-s1 answers.
    let kubeconfig = dir.join("prod.yaml");
    std::fs::write(&kubeconfig, d.kubeconfig(&prod).await?)?;
    let target = ApiTarget::from_kubeconfig(&std::fs::read_to_string(&kubeconfig)?)?;
    ensure!(
        target.server.contains(&vip),
        "the kubeconfig points at the VIP {vip}: {}",
        target.server
    );
    let first = wait_answer(&laptop, &target, &s1, 1).await?;
    println!("grant → first answer through the VIP from prod-s1: {first:?}");
    let nodes = blocking(|| kubectl_nodes(&laptop, &kubeconfig))?;
    let expected = platform_node_names(&d, &prod).await?;
    ensure!(
        nodes == expected && nodes.len() == 3,
        "kubectl get nodes lists prod's 3 nodes {expected:?}: {nodes:?}"
    );
    staging_answers_too(&d, &laptop, &staging, &st1, &dir).await?;
    let silent = vip_events(&d.op, SILENT, &str_at(&v, "/id")?).await?;
    ensure!(
        silent.is_empty(),
        "prod-s1 served every request, yet the sensor called it silent: {silent:?}"
    );

    // Failover: the holder's agent dies and its interface goes down.
    let outage = ProbeLoop::start(&laptop, &target, PROBE_EVERY, OUTAGE_PROBE_TIMEOUT)?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed = Instant::now();
    s1.agent.kill();
    s1.host.run("ip", &["link", "set", &d.interface, "down"])?;
    let vip_id = str_at(&v, "/id")?;
    let a = wait_until(
        WAIT,
        "a promotion of prod's VIP awaiting approval",
        || async {
            let all = approvals(&d.op, "requested")
                .await
                .map_err(|e| format!("{e:#}"))?;
            all.into_iter()
                .find(|a| a["subject"] == format!("virtual_ip/{vip_id}"))
                .ok_or_else(|| "none".to_string())
        },
    )
    .await?;
    let asked = killed.elapsed();
    let approved = Instant::now();
    d.op.ok(
        "system_approve",
        json!({ "approval_id": str_at(&a, "/id")? }),
    )
    .await?;
    wait_answer(&laptop, &target, &s2, 2).await?;
    let results = outage.stop()?;
    let (down, failed) = longest_outage(&results).context("the kill caused no failed request")?;
    let answered = results
        .iter()
        .find(|r| {
            r.at >= approved
                && r.outcome
                    .as_ref()
                    .is_ok_and(|a| a.instance == s2.instance_id)
        })
        .map(|r| r.at + r.took - approved)
        .context("no answer from prod-s2 in the probe loop")?;
    println!(
        "failover: kill → approval requested {asked:?}; approve → first answer from prod-s2 \
         {answered:?}; outage seen by the client {down:?} ({failed} failed requests every \
         {PROBE_EVERY:?}, the approval wait included)"
    );
    let nodes = blocking(|| kubectl_nodes(&laptop, &kubeconfig))?;
    ensure!(nodes == expected, "kubectl after the failover: {nodes:?}");
    let reached = d
        .wait_vip(&prod, "reachable at generation 2 through prod-s2", |v| {
            v["reachable"]["generation"] == 2
                && v["reachable"]["holder_peer_id"] == s2.peer.as_str()
        })
        .await?;
    println!(
        "approve → VIP reachable recorded: {:?}; {}",
        approved.elapsed(),
        reached["reachable"]
    );

    // The old holder comes back: it removes the VIP address itself.
    let vip128 = format!("{vip}/128");
    ensure!(
        s1.host.addresses(&d.interface)?.contains(&vip128),
        "precondition: the dead holder's interface still has {vip128}: {:?}",
        s1.host.addresses(&d.interface)?
    );
    let restarted = Instant::now();
    d.restart(&mut s1)?;
    wait_until(
        WAIT,
        "the old holder's agent removed the VIP address",
        || async {
            let addrs = s1
                .host
                .addresses(&d.interface)
                .map_err(|e| format!("{e:#}"))?;
            if addrs.contains(&vip128) {
                Err(format!("{addrs:?}; agent log:\n{}", s1.agent.log_tail(8)))
            } else {
                Ok(())
            }
        },
    )
    .await?;
    println!(
        "restart → old holder removed {vip128}: {:?}",
        restarted.elapsed()
    );
    // Restarted, it serves its API again (on its own /128, through the grant).
    let own = str_at(&d.peer_config(&s1.peer).await?, "/desired/address")?;
    let direct = ApiTarget {
        server: format!("https://[{own}]:6443"),
        ..target.clone()
    };
    wait_until(
        WAIT,
        "the restarted prod-s1 serving its k3s API on its /128",
        || async {
            let r = blocking(|| probe_once(&laptop, &direct, PROBE_TIMEOUT))
                .map_err(|e| format!("{e:#}"))?;
            match r.outcome {
                Ok(a) if a.instance == s1.instance_id => Ok(a),
                other => Err(format!(
                    "{other:?}; listeners on prod-s1: {:?}",
                    s1.host
                        .run("ss", &["-Htln"])
                        .unwrap_or_else(|e| format!("{e:#}"))
                )),
            }
        },
    )
    .await?;
    d.wait_vip(
        &prod,
        "prod-s1 a candidate again, only prod-s2 applied",
        |v| {
            v["failover_holder_peer_ids"] == json!([s1.peer])
                && v["applied_generations"] == json!({ s2.peer.clone(): 2 })
        },
    )
    .await?;
    d.wait_in_sync(&[&s1, &s2, &w1, &st1]).await?;

    drain_loses_no_request(&d, &laptop, &target, &prod, (&s2, &s1, &w1), 2).await?;

    // Revoked: the operator's tunnel leads nowhere.
    let revoked = Revocation {
        grant_id: &grant_id,
        public_key: &key.public,
        gateway: &w1,
    };
    revoked.cuts_off(&d, &laptop, &target, &kubeconfig).await?;
    println!("whole scenario: {:?}", t0.elapsed());
    Ok(())
}
