//! Issue 15's end-to-end test: a prod cluster (2 servers + 1 worker) and a
//! staging cluster, each instance in its own namespace with its agent's
//! WireGuard interface; an operator namespace that imports an access grant
//! with the real `wg-quick` and runs the real `kubectl` through the VIP
//! across a failover, a drain and a revocation.

use anyhow::{bail, ensure, Context as _};
use powernode_tests::failover_support::{approvals, vip_events, FailoverPolicy, SILENT};
use powernode_tests::lifecycle_support::{str_at, wait_until, AGENT, SERVER, WAIT};
use powernode_tests::netns::fleet::{kubectl, DataPlane, NsMember};
use powernode_tests::netns::probe::{
    longest_outage, probe_once, Answer, ApiTarget, ProbeLoop, ProbeResult,
};
use powernode_tests::netns::wireguard::{with_private_key, KeyPair, WgQuick};
use powernode_tests::netns::Host;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

/// The network's pod prefix: every node gets a /24 of it.
const POD_PREFIX: &str = "10.42.0.0/16";
/// The operator's probe loop interval.
const PROBE_EVERY: Duration = Duration::from_millis(50);
/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
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
    d.op.ok(
        "system_sdwan_revoke_access_grant",
        json!({ "grant_id": grant_id }),
    )
    .await?;
    let revoked = Instant::now();
    wait_until(
        WAIT,
        "the revoked operator can no longer reach the VIP",
        || async {
            let r = blocking(|| probe_once(&laptop, &target, PROBE_TIMEOUT))
                .map_err(|e| format!("{e:#}"))?;
            match r.outcome {
                Ok(a) => Err(format!("still answered by {a:?}")),
                Err(_) => Ok(()),
            }
        },
    )
    .await?;
    for _ in 0..3 {
        let r = blocking(|| probe_once(&laptop, &target, PROBE_TIMEOUT))?;
        ensure!(
            r.outcome.is_err(),
            "reached the VIP after revocation: {r:?}"
        );
    }
    ensure!(
        blocking(|| kubectl_nodes(&laptop, &kubeconfig)).is_err(),
        "kubectl works after the grant was revoked"
    );
    println!("revoke → the operator cut off: {:?}", revoked.elapsed());
    println!("whole scenario: {:?}", t0.elapsed());
    Ok(())
}

/// Every node's pod /24 is routed through the tunnel on every other peer
/// (flannel host-gw over WireGuard), and not on its own host.
async fn pod_routes_are_on_the_right_peers(
    d: &DataPlane,
    members: &[&NsMember],
) -> anyhow::Result<()> {
    let prefix: ipnet::Ipv4Net = POD_PREFIX.parse()?;
    // Each peer's pod subnet as the others' desired configs route it.
    let mut subnets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for m in members {
        let c = d.peer_config(&m.peer).await?;
        for p in c["desired"]["peers"].as_array().into_iter().flatten() {
            for ip in p["allowed_ips"].as_array().into_iter().flatten() {
                let Some(net) = ip.as_str().and_then(|s| s.parse::<ipnet::Ipv4Net>().ok()) else {
                    continue;
                };
                if prefix.contains(&net) && net.prefix_len() == 24 {
                    subnets
                        .entry(str_at(p, "/id")?)
                        .or_default()
                        .insert(net.to_string());
                }
            }
        }
    }
    let mut seen = BTreeSet::new();
    for m in members {
        let mine = subnets.get(&m.peer).cloned().unwrap_or_default();
        ensure!(
            mine.len() == 1 && seen.insert(mine.clone()),
            "{} has one pod /24 of its own: {subnets:?}",
            m.hostname
        );
    }
    for m in members {
        let routes = m.host.routes("-4")?;
        let via_tunnel: BTreeSet<String> = routes
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["dev"] == d.interface.as_str())
            .filter_map(|r| r["dst"].as_str().map(str::to_string))
            .collect();
        for other in members {
            let subnet = subnets[&other.peer]
                .iter()
                .next()
                .cloned()
                .unwrap_or_default();
            let routed = via_tunnel.contains(&subnet);
            ensure!(
                routed == (other.peer != m.peer),
                "{}: pod subnet {subnet} of {} {} routed through {}; routes: {routes}",
                m.hostname,
                other.hostname,
                if routed { "is" } else { "is not" },
                d.interface
            );
        }
    }
    println!("pod /24 routes on the right peers: {subnets:?}");
    Ok(())
}

/// The staging cluster answers through the same grant, from its server.
async fn staging_answers_too(
    d: &DataPlane,
    laptop: &Host,
    staging: &str,
    st1: &NsMember,
    dir: &Path,
) -> anyhow::Result<()> {
    let kubeconfig = dir.join("staging.yaml");
    std::fs::write(&kubeconfig, d.kubeconfig(staging).await?)?;
    let target = ApiTarget::from_kubeconfig(&std::fs::read_to_string(&kubeconfig)?)?;
    wait_answer(laptop, &target, st1, 1).await?;
    let nodes = blocking(|| kubectl_nodes(laptop, &kubeconfig))?;
    ensure!(
        nodes == platform_node_names(d, staging).await?,
        "staging's nodes: {nodes:?}"
    );
    Ok(())
}

/// Drains the holder `from` (at generation `before`) while the operator
/// probes every 50 ms (through `gateway`): the VIP moves to `to` at the next
/// generation and no request fails.
async fn drain_loses_no_request(
    d: &DataPlane,
    laptop: &Host,
    target: &ApiTarget,
    prod: &str,
    (from, to, gateway): (&NsMember, &NsMember, &NsMember),
    before: u64,
) -> anyhow::Result<()> {
    let after = before + 1;
    let probes = ProbeLoop::start(laptop, target, PROBE_EVERY, PROBE_TIMEOUT)?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let drained = Instant::now();
    d.op.ok("system_drain_instance", json!({ "id": from.instance_id }))
        .await?;
    let expected = format!("held by {} at generation {after}, reachable", to.hostname);
    d.wait_vip(prod, &expected, |v| {
        v["holder_peer_id"] == to.peer.as_str()
            && v["generation"] == after
            && v["reachable"]["generation"] == after
    })
    .await
    .with_context(|| {
        let last = probes.results().last().cloned();
        format!(
            "last probe from the operator: {last:?}\nlisteners on {}: {}\n\
             {}'s agent log:\n{}\n{}'s agent log:\n{}",
            to.hostname,
            to.host
                .run("ss", &["-Htln"])
                .unwrap_or_else(|e| format!("{e:#}")),
            to.hostname,
            to.agent.log_tail(15),
            from.hostname,
            from.agent.log_tail(15)
        )
    })?;
    let moved = drained.elapsed();
    let new_answer = Answer {
        instance: to.instance_id.clone(),
        generation: Some(after),
    };
    wait_until(
        WAIT,
        &format!("the probe loop sees {} at generation {after}", to.hostname),
        || async {
            match probes.results().last().map(|r| r.outcome.clone()) {
                Some(Ok(a)) if a == new_answer => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let results = probes.stop()?;
    let failed: Vec<&ProbeResult> = results.iter().filter(|r| r.outcome.is_err()).collect();
    let answered_by: Vec<Answer> =
        results
            .iter()
            .filter_map(|r| r.outcome.as_ref().ok())
            .fold(Vec::new(), |mut v, a| {
                if v.last() != Some(a) {
                    v.push(a.clone());
                }
                v
            });
    let retried: Vec<&String> = results.iter().filter_map(|r| r.retried.as_ref()).collect();
    println!(
        "drain: {} requests every {PROBE_EVERY:?}, {} failed, {} sent again after a connection \
         reset (as client-go does); VIP moved and reachable in {moved:?}; answered by \
         {answered_by:?}",
        results.len(),
        failed.len(),
        retried.len()
    );
    ensure!(
        failed.is_empty(),
        "requests failed during the drain: {failed:#?}\n{}",
        [from, to, gateway]
            .iter()
            .map(|m| format!("{}'s agent log:\n{}", m.hostname, m.agent.log_tail(12)))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let old_answer = Answer {
        instance: from.instance_id.clone(),
        generation: Some(before),
    };
    ensure!(
        answered_by == vec![old_answer, new_answer],
        "answers went from {} (generation {before}) to {} (generation {after}): {answered_by:?}",
        from.hostname,
        to.hostname
    );
    Ok(())
}

/// Waits until `GET /version` through the VIP from `host` is answered by
/// `m` at `generation`.
async fn wait_answer(
    host: &Host,
    target: &ApiTarget,
    m: &NsMember,
    generation: u64,
) -> anyhow::Result<Answer> {
    let want = Answer {
        instance: m.instance_id.clone(),
        generation: Some(generation),
    };
    wait_until(
        WAIT,
        &format!(
            "{} answering through the VIP at generation {generation}",
            m.hostname
        ),
        || async {
            let r = blocking(|| probe_once(host, target, PROBE_TIMEOUT))
                .map_err(|e| format!("{e:#}"))?;
            match r.outcome {
                Ok(a) if a == want => Ok(a),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await
}

/// Runs blocking `f` (a process, a thread in a namespace) without
/// starving the in-process node of this runtime's workers.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// `kubectl get nodes -o json` in `host`: the node names.
fn kubectl_nodes(host: &Host, kubeconfig: &Path) -> anyhow::Result<BTreeSet<String>> {
    let out = kubectl(host, kubeconfig, &["get", "nodes", "-o", "json"])?;
    let v: Value = serde_json::from_str(&out).with_context(|| format!("kubectl said {out}"))?;
    let items = v["items"]
        .as_array()
        .with_context(|| format!("no items: {v}"))?;
    items
        .iter()
        .map(|n| str_at(n, "/metadata/name"))
        .collect::<anyhow::Result<_>>()
}

/// The cluster's node names as the platform knows them.
async fn platform_node_names(d: &DataPlane, cluster: &str) -> anyhow::Result<BTreeSet<String>> {
    let nodes = d.op.nodes(cluster).await?;
    let names: BTreeSet<String> = nodes
        .iter()
        .filter_map(|n| n["node_name"].as_str().map(str::to_string))
        .collect();
    if names.len() != nodes.len() {
        bail!("nodes without a name: {nodes:?}");
    }
    Ok(names)
}
