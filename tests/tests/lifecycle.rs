//! The tutorial (one cluster: bootstrap, VIP endpoint, worker, kubeconfig)
//! and the multi-cluster runbook (two clusters, targeted workers, HA
//! control plane, decommission), end to end: a real nats-server, every
//! service, real `powernode-agent` processes with the simulated runtime.
//!
//! `cargo nextest run -p powernode-tests --test lifecycle`

use anyhow::{ensure, Context as _};
use ipnet::Ipv6Net;
use powernode_tests::lifecycle_support::*;
use serde_json::{json, Value};
use std::net::Ipv6Addr;

/// `https://[addr]:6443` → `addr`.
fn endpoint_addr(endpoint: &str) -> anyhow::Result<Ipv6Addr> {
    let inner = endpoint
        .strip_prefix("https://[")
        .and_then(|r| r.strip_suffix("]:6443"))
        .with_context(|| format!("{endpoint} is not https://[<ipv6>]:6443"))?;
    Ok(inner.parse()?)
}

/// The sequence of the first event in `events` of `kind` matching `pred`.
fn seq_of(events: &[Value], kind: &str, pred: impl Fn(&Value) -> bool) -> anyhow::Result<u64> {
    events
        .iter()
        .find(|e| e["kind"] == kind && pred(e))
        .and_then(|e| e["seq"].as_u64())
        .with_context(|| {
            let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
            format!("no {kind} event; seen {kinds:?}")
        })
}

/// The value after `key: ` on the first line of `text` that has it.
fn yaml_value<'a>(text: &'a str, key: &str) -> anyhow::Result<&'a str> {
    text.lines()
        .find_map(|l| l.trim_start().strip_prefix(&format!("{key}: ")))
        .with_context(|| format!("no {key} in {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tutorial_single_cluster_with_a_worker() -> anyhow::Result<()> {
    let p = Platform::start().await?;
    let net = p.network("k3s-net", None).await?;
    let vip_range: Ipv6Net = str_at(&p.network_json(&net).await?, "/vip_range")?.parse()?;

    // Bootstrap server → active cluster behind a VIP from the network's range.
    let (server, cluster) = p.bootstrap(&p.op, "k3s-server-1", Some(&net)).await?;
    let cluster_id = str_at(&cluster, "/id")?;
    let endpoint = str_at(&cluster, "/api_endpoint")?;
    let vip = endpoint_addr(&endpoint)?;
    let peer = p.attach(&net, &server.instance_id).await?;
    let own_ip: Ipv6Addr = str_at(&peer, "/overlay_ip")?.parse()?;
    ensure!(
        vip_range.contains(&vip) && vip != own_ip,
        "api_endpoint {endpoint} must be a VIP from {vip_range}, not the instance /128 {own_ip}"
    );
    ensure!(
        cluster["flavor"] == "k3s" && cluster["name"] == "k3s-server-1",
        "{cluster}"
    );

    // recent_events({kind_prefix: "system.k3s", limit: 20}) in the tutorial's order.
    let k3s = p
        .ok(
            "recent_events",
            json!({"kind_prefix": "system.k3s", "limit": 20}),
        )
        .await?["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mine = |e: &Value| e["payload"]["instance_id"] == server.instance_id.as_str();
    let assigned = seq_of(&k3s, "system.k3s.module.assigned", |e| {
        e["payload"]["template_id"] == server.template_id.as_str()
    })?;
    let installing = seq_of(&k3s, "system.k3s.runtime.installing", mine)?;
    let bootstrap = seq_of(&k3s, "system.k3s.handshake.bootstrap", mine)?;
    let bootstrapped = seq_of(&k3s, "system.k3s.cluster.bootstrapped", |e| {
        e["payload"]["cluster_id"] == cluster_id.as_str()
    })?;
    let ready = seq_of(&k3s, "system.k3s.handshake.ready", mine)?;
    ensure!(
        assigned < installing && installing < bootstrap && bootstrap < bootstrapped && bootstrapped < ready,
        "k3s events out of order: assigned {assigned}, installing {installing}, bootstrap {bootstrap}, bootstrapped {bootstrapped}, ready {ready}"
    );
    let allocated = p.events("system.sdwan.virtual_ip.allocated").await?;
    ensure!(allocated.len() == 1, "one VIP allocated: {allocated:?}");
    let a = &allocated[0];
    ensure!(
        a["payload"]["vip"] == vip.to_string()
            && a["payload"]["purpose"] == "k3s_api_endpoint"
            && a["payload"]["cluster_id"] == cluster_id.as_str(),
        "{a}"
    );
    let allocated_seq = a["seq"].as_u64().unwrap_or_default();
    ensure!(
        bootstrap < allocated_seq && allocated_seq < bootstrapped,
        "the VIP is allocated between handshake.bootstrap ({bootstrap}) and cluster.bootstrapped ({bootstrapped}), at {allocated_seq}"
    );
    let v = p
        .ok(
            "system_sdwan_get_virtual_ip",
            json!({"name": "k3s_api_endpoint"}),
        )
        .await?;
    ensure!(
        v["virtual_ip"]["holders"] == json!([server.instance_id])
            && v["virtual_ip"]["api_endpoint"] == endpoint.as_str(),
        "the bootstrap server holds the VIP: {v}"
    );

    // A worker with target_cluster_id joins.
    let worker = p
        .start_member(
            &p.op,
            "k3s-worker-1",
            AGENT,
            Some(&cluster_id),
            Some(&net),
            2048,
        )
        .await?;
    p.wait_node_ready(&cluster_id, &worker.instance_id)
        .await
        .with_context(|| format!("worker agent log:\n{}", worker.agent.log_tail(30)))?;
    let hs = p
        .instance_events("system.k3s.handshake", &worker.instance_id)
        .await?;
    let worker_kinds: Vec<&str> = hs.iter().filter_map(|e| e["kind"].as_str()).collect();
    ensure!(
        worker_kinds
            == [
                "system.k3s.handshake.join_request",
                "system.k3s.handshake.join_token_issued",
                "system.k3s.handshake.ready"
            ],
        "worker handshake: {worker_kinds:?}"
    );
    ensure!(
        hs[0]["payload"]["target_cluster_id"] == cluster_id.as_str()
            && hs[1]["payload"]["cluster_id"] == cluster_id.as_str()
            && hs[1]["payload"]["api_endpoint"] == endpoint.as_str(),
        "{hs:?}"
    );

    // list_nodes: control-plane + worker, ready, with the version.
    let nodes = p.nodes(&cluster_id).await?;
    let shape: Vec<(String, String, String, String)> = nodes
        .iter()
        .map(|n| {
            let s = |k: &str| n[k].as_str().unwrap_or_default().to_string();
            (s("instance_id"), s("role"), s("status"), s("version"))
        })
        .collect();
    let want = |id: &str, role: &str| {
        (
            id.to_string(),
            role.to_string(),
            "ready".to_string(),
            K3S_VERSION.to_string(),
        )
    };
    ensure!(
        shape
            == [
                want(&server.instance_id, "control-plane"),
                want(&worker.instance_id, "worker")
            ],
        "nodes: {nodes:?}"
    );
    let c = p.cluster(&cluster_id).await?;
    ensure!(c["node_count"] == 2 && c["status"] == "active", "{c}");

    // kubeconfig: the VIP endpoint, and an audit event without the secret.
    let kc = p
        .ok(
            "kubernetes_get_kubeconfig",
            json!({"cluster_id": cluster_id}),
        )
        .await?;
    let kubeconfig = str_at(&kc, "/kubeconfig")?;
    ensure!(kc["api_endpoint"] == endpoint.as_str(), "{kc}");
    ensure!(
        yaml_value(&kubeconfig, "server")? == endpoint,
        "kubeconfig server must be {endpoint}:\n{kubeconfig}"
    );
    let retrieved = p.events("system.k3s.kubeconfig.retrieved").await?;
    ensure!(
        retrieved.len() == 1 && retrieved[0]["payload"]["cluster_id"] == cluster_id.as_str(),
        "{retrieved:?}"
    );

    // No secret anywhere: the log (every record, raw) and recent_events.
    let server_token = str_at(&server.agent.wait_phase("ready").await?, "/token")?;
    let worker_token = str_at(&worker.agent.wait_phase("ready").await?, "/token")?;
    let password = server_token
        .rsplit_once(':')
        .map_or(server_token.as_str(), |(_, pw)| pw)
        .to_string();
    let secrets = [
        ("the node token", server_token.clone()),
        ("the token's password", password),
        ("the worker's join token", worker_token),
        (
            "the kubeconfig's client key",
            yaml_value(&kubeconfig, "client-key-data")?.to_string(),
        ),
        (
            "the kubeconfig's client certificate",
            yaml_value(&kubeconfig, "client-certificate-data")?.to_string(),
        ),
        ("the kubeconfig", kubeconfig.clone()),
    ];
    let shown = p.events("").await?;
    ensure!(
        shown.len() > 20,
        "recent_events shows the whole story: {}",
        shown.len()
    );
    let shown = Value::Array(shown).to_string();
    for (what, secret) in &secrets {
        p.assert_log_free_of(what, secret).await?;
        ensure!(
            !shown.contains(secret.as_str()),
            "recent_events shows {what}"
        );
    }

    // Clean up as the tutorial does: decommission (instances kept), then
    // terminate both instances; their agents stop.
    let d = p
        .ok(
            "kubernetes_decommission_cluster",
            json!({"cluster_id": cluster_id}),
        )
        .await?;
    ensure!(
        d["instances_kept"] == json!([server.instance_id, worker.instance_id]),
        "{d}"
    );
    for id in [&server.instance_id, &worker.instance_id] {
        let t = p.ok("system_terminate_instance", json!({"id": id})).await?;
        ensure!(t["instance"]["status"] == "terminated", "{t}");
    }
    let (mut server, mut worker) = (server, worker);
    wait_until(
        WAIT,
        "both agents to stop once their instances are terminated",
        || {
            let running = (server.agent.is_running(), worker.agent.is_running());
            async move {
                match running {
                    (false, false) => Ok(()),
                    (s, w) => Err(format!("server running: {s}, worker running: {w}")),
                }
            }
        },
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runbook_prod_and_staging() -> anyhow::Result<()> {
    let p = Platform::start().await?;
    let net = p.network("k3s-net", None).await?;

    // Phases 1–2: two clusters in one account, different VIPs.
    let (prod, prod_c) = p.bootstrap(&p.op, "k3s-prod-server-1", Some(&net)).await?;
    let (staging, staging_c) = p
        .bootstrap(&p.op, "k3s-staging-server-1", Some(&net))
        .await?;
    let prod_id = str_at(&prod_c, "/id")?;
    let staging_id = str_at(&staging_c, "/id")?;
    let prod_ep = str_at(&prod_c, "/api_endpoint")?;
    let staging_ep = str_at(&staging_c, "/api_endpoint")?;
    ensure!(
        endpoint_addr(&prod_ep)? != endpoint_addr(&staging_ep)?,
        "two clusters, two VIPs: {prod_ep} / {staging_ep}"
    );
    let listed: Vec<(String, String)> = p
        .clusters(false)
        .await?
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default().to_string(),
                c["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    ensure!(
        listed
            == [
                ("k3s-prod-server-1".to_string(), "active".to_string()),
                ("k3s-staging-server-1".to_string(), "active".to_string())
            ],
        "{listed:?}"
    );

    // Phase 3: a worker targeting prod joins prod, though staging is the
    // most recent; one without a target joins the most recent (staging).
    let worker = p
        .start_member(
            &p.op,
            "k3s-prod-worker-1",
            AGENT,
            Some(&prod_id),
            Some(&net),
            2048,
        )
        .await?;
    let loose = p
        .start_member(&p.op, "k3s-loose-worker-1", AGENT, None, Some(&net), 2048)
        .await?;
    p.wait_node_ready(&prod_id, &worker.instance_id).await?;
    p.wait_node_ready(&staging_id, &loose.instance_id).await?;
    let in_staging: Vec<Value> = p.nodes(&staging_id).await?;
    ensure!(
        !in_staging
            .iter()
            .any(|n| n["instance_id"] == worker.instance_id.as_str()),
        "the prod worker is not in staging: {in_staging:?}"
    );
    let issued = p
        .instance_events(
            "system.k3s.handshake.join_token_issued",
            &worker.instance_id,
        )
        .await?;
    ensure!(
        issued.len() == 1 && issued[0]["payload"]["cluster_id"] == prod_id.as_str(),
        "{issued:?}"
    );

    // Phase 4: a second server targeting prod joins as control plane and
    // becomes a failover candidate of prod's VIP.
    let server2 = p
        .start_member(
            &p.op,
            "k3s-prod-server-2",
            SERVER,
            Some(&prod_id),
            Some(&net),
            2048,
        )
        .await?;
    let row = p.wait_node_ready(&prod_id, &server2.instance_id).await?;
    ensure!(row["role"] == "control-plane", "{row}");
    ensure!(
        p.events("system.k3s.cluster.bootstrapped").await?.len() == 2,
        "the joining server created no cluster"
    );
    let peer2 = str_at(&p.attach(&net, &server2.instance_id).await?, "/id")?;
    let vip = wait_until(
        WAIT,
        "server 2 among prod's VIP failover candidates",
        || {
            let (p, peer2) = (&p, &peer2);
            let prod_id = prod_id.clone();
            async move {
                let v = p
                    .ok(
                        "system_sdwan_get_virtual_ip",
                        json!({"cluster_id": prod_id}),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                let v = v["virtual_ip"].clone();
                if v["failover_holder_peer_ids"]
                    .as_array()
                    .is_some_and(|c| c.contains(&json!(peer2)))
                {
                    Ok(v)
                } else {
                    Err(v.to_string())
                }
            }
        },
    )
    .await?;
    ensure!(
        vip["holders"] == json!([prod.instance_id])
            && vip["failover_candidates"].as_array().is_some_and(|c| c
                .iter()
                .any(|x| x["instance_id"] == server2.instance_id.as_str())),
        "{vip}"
    );
    let prod_nodes = p.nodes(&prod_id).await?;
    let roles: Vec<(&str, &str)> = prod_nodes
        .iter()
        .map(|n| {
            (
                n["role"].as_str().unwrap_or(""),
                n["status"].as_str().unwrap_or(""),
            )
        })
        .collect();
    ensure!(
        roles
            == [
                ("control-plane", "ready"),
                ("worker", "ready"),
                ("control-plane", "ready")
            ],
        "{prod_nodes:?}"
    );

    // Phase 5: a kubeconfig per cluster, each pointing at its VIP.
    for (id, ep) in [(&prod_id, &prod_ep), (&staging_id, &staging_ep)] {
        let kc = p
            .ok("kubernetes_get_kubeconfig", json!({"cluster_id": id}))
            .await?;
        let server_line = kc["kubeconfig"]
            .as_str()
            .unwrap_or_default()
            .lines()
            .find(|l| l.trim_start().starts_with("server:"))
            .unwrap_or_default()
            .trim()
            .to_string();
        ensure!(
            server_line == format!("server: {ep}") && kc["api_endpoint"] == ep.as_str(),
            "kubeconfig of {id}: {server_line} / {}",
            kc["api_endpoint"]
        );
    }

    // Phase 6: decommission staging.
    let staging_members = [staging.instance_id.clone(), loose.instance_id.clone()];
    let d = p
        .ok(
            "kubernetes_decommission_cluster",
            json!({"cluster_id": staging_id}),
        )
        .await?;
    ensure!(
        d["removed_nodes"] == 2 && d["cluster"]["status"] == "decommissioned",
        "{d}"
    );
    ensure!(
        p.nodes(&staging_id).await?.is_empty(),
        "staging node rows are gone"
    );
    let released = wait_until(WAIT, "staging's VIP released", || {
        let p = &p;
        let staging_id = staging_id.clone();
        async move {
            let v = p
                .ok(
                    "system_sdwan_get_virtual_ip",
                    json!({"cluster_id": staging_id}),
                )
                .await
                .map_err(|e| e.to_string())?;
            if v["virtual_ip"]["status"] == "released" {
                Ok(v["virtual_ip"].clone())
            } else {
                Err(v.to_string())
            }
        }
    })
    .await?;
    ensure!(released["holders"] == json!([]), "{released}");
    for id in &staging_members {
        let i = p.instance(id).await?;
        ensure!(
            i["status"] == "enrolled",
            "instance {id} is kept, not terminated: {i}"
        );
    }
    let live: Vec<Value> = p.clusters(false).await?;
    ensure!(
        live.len() == 1 && live[0]["id"] == prod_id.as_str(),
        "without include_decommissioned: {live:?}"
    );
    let all = p.clusters(true).await?;
    ensure!(
        all.iter().any(|c| c["id"] == staging_id.as_str()
            && c["status"] == "decommissioned"
            && c["node_count"] == 0)
            && all.len() == 2,
        "with include_decommissioned: {all:?}"
    );
    let prod_vip = p
        .ok(
            "system_sdwan_get_virtual_ip",
            json!({"cluster_id": prod_id}),
        )
        .await?;
    ensure!(
        prod_vip["virtual_ip"]["status"] == "allocated" && p.nodes(&prod_id).await?.len() == 3,
        "prod is untouched: {prod_vip}"
    );
    let gone = p
        .action(
            "kubernetes_get_kubeconfig",
            json!({"cluster_id": staging_id}),
        )
        .await;
    ensure!(
        matches!(&gone, Err(e) if e.status() == Some(409)),
        "no kubeconfig for a decommissioned cluster: {gone:?}"
    );

    // A second decommission is refused and changes nothing.
    let before = p.settle().await?;
    let again = p
        .action(
            "kubernetes_decommission_cluster",
            json!({"cluster_id": staging_id}),
        )
        .await;
    ensure!(
        matches!(&again, Err(e) if e.status() == Some(409) && e.code() == "already_decommissioned"),
        "{again:?}"
    );
    ensure!(
        p.settle().await? == before,
        "a refused decommission appended events"
    );
    Ok(())
}
