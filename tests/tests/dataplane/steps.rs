//! The steps of the data-plane scenario: pod routes, the staging cluster,
//! a drain under a probe loop, a revocation, and the waits they share.

use crate::scenario::{POD_PREFIX, PROBE_EVERY, PROBE_TIMEOUT};
use anyhow::{bail, ensure, Context as _};
use powernode_tests::lifecycle_support::{str_at, wait_until, WAIT};
use powernode_tests::netns::fleet::{kubectl, DataPlane, NsMember};
use powernode_tests::netns::probe::{probe_once, Answer, ApiTarget, ProbeLoop, ProbeResult};
use powernode_tests::netns::Host;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

/// An access grant to revoke, and where its tunnel ends.
pub(crate) struct Revocation<'a> {
    pub grant_id: &'a str,
    pub public_key: &'a str,
    pub gateway: &'a NsMember,
}

impl Revocation<'_> {
    /// Revokes the grant: the gateway drops the operator's peer, and neither
    /// a probe nor kubectl reaches the VIP any more.
    pub(crate) async fn cuts_off(
        &self,
        d: &DataPlane,
        laptop: &Host,
        target: &ApiTarget,
        kubeconfig: &Path,
    ) -> anyhow::Result<()> {
        d.op.ok(
            "system_sdwan_revoke_access_grant",
            json!({ "grant_id": self.grant_id }),
        )
        .await?;
        let revoked = Instant::now();
        wait_until(
            WAIT,
            "the revoked operator can no longer reach the VIP",
            || async {
                let r = blocking(|| probe_once(laptop, target, PROBE_TIMEOUT))
                    .map_err(|e| format!("{e:#}"))?;
                match r.outcome {
                    Ok(a) => Err(format!("still answered by {a:?}")),
                    Err(_) => Ok(()),
                }
            },
        )
        .await?;
        let cut = revoked.elapsed();
        let peers = self
            .gateway
            .host
            .run("wg", &["show", &d.interface, "peers"])?;
        ensure!(
            !peers.contains(self.public_key),
            "the gateway {} still has the operator's peer: {peers}",
            self.gateway.hostname
        );
        for _ in 0..3 {
            let r = blocking(|| probe_once(laptop, target, PROBE_TIMEOUT))?;
            ensure!(
                r.outcome.is_err(),
                "reached the VIP after revocation: {r:?}"
            );
        }
        ensure!(
            blocking(|| kubectl_nodes(laptop, kubeconfig)).is_err(),
            "kubectl works after the grant was revoked"
        );
        let listed =
            d.op.ok(
                "system_sdwan_list_access_grants",
                json!({ "network_id": d.net }),
            )
            .await?;
        let status = listed["grants"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|g| g["id"] == self.grant_id)
            .map(|g| g["status"].clone());
        ensure!(
            status == Some(json!("revoked")),
            "the grant is listed as revoked: {listed}"
        );
        println!("revoke → the operator cut off: {cut:?}");
        Ok(())
    }
}

/// Every node's pod /24 is routed through the tunnel on every other peer
/// (flannel host-gw over WireGuard), and not on its own host.
pub(crate) async fn pod_routes_are_on_the_right_peers(
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
pub(crate) async fn staging_answers_too(
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
pub(crate) async fn drain_loses_no_request(
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
pub(crate) async fn wait_answer(
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
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// `kubectl get nodes -o json` in `host`: the node names.
pub(crate) fn kubectl_nodes(host: &Host, kubeconfig: &Path) -> anyhow::Result<BTreeSet<String>> {
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
pub(crate) async fn platform_node_names(
    d: &DataPlane,
    cluster: &str,
) -> anyhow::Result<BTreeSet<String>> {
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
