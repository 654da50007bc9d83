//! SD-WAN and cluster actions over HTTP, on both log backends.

use anyhow::ensure;
use powernode_log::SharedLog;
use powernode_tests::api_support::Api;
use powernode_tests::http::action;
use serde_json::json;

async fn sdwan_networks_peers_and_prefix_rules(api: Api) -> anyhow::Result<()> {
    let (_, t) = api
        .account_with_token("net", &["system.kubernetes_provision"])
        .await?;
    let port = api.port;
    let call = |name: &'static str, args: serde_json::Value| {
        let t = t.clone();
        async move { action(port, Some(&t), name, &args).await }
    };
    let net = call("system_sdwan_create_network", json!({"name": "k3s-prod-net", "pod_subnet_prefix": "10.42.0.0/16", "routing_mode": "ibgp"})).await?;
    ensure!(net.status == 200, "{:?}", net.body);
    let n = &net.body["data"]["network"];
    let overlay: ipnet::Ipv6Net = n["overlay_prefix"].as_str().unwrap_or("").parse()?;
    ensure!(
        overlay.prefix_len() == 64 && n["pod_subnet_prefix"] == "10.42.0.0/16",
        "{n}"
    );
    let net_id = n["id"].clone();

    let before = api.log.last_seq().await?;
    let dup = call(
        "system_sdwan_create_network",
        json!({"name": "other", "pod_subnet_prefix": "10.42.128.0/17"}),
    )
    .await?;
    ensure!(
        dup.status == 409 && dup.body["error"]["code"] == "prefix_overlap",
        "{:?}",
        dup.body
    );
    let host_bits = call(
        "system_sdwan_create_network",
        json!({"name": "x", "pod_subnet_prefix": "10.43.0.1/16"}),
    )
    .await?;
    ensure!(
        host_bits.status == 400
            && host_bits.body["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("10.43.0.0/16"),
        "{:?}",
        host_bits.body
    );
    let garbage = call(
        "system_sdwan_create_network",
        json!({"name": "x", "pod_subnet_prefix": "ten-dot"}),
    )
    .await?;
    ensure!(
        garbage.status == 400 && garbage.body["error"]["code"] == "invalid_arguments",
        "{:?}",
        garbage.body
    );
    let into_overlay = call(
        "system_sdwan_create_network",
        json!({"name": "x", "pod_subnet_prefix": overlay.to_string()}),
    )
    .await?;
    ensure!(into_overlay.status == 409, "{:?}", into_overlay.body);
    ensure!(
        api.log.last_seq().await? == before,
        "refused network creations appended events"
    );
    let second = call(
        "system_sdwan_create_network",
        json!({"name": "staging", "pod_subnet_prefix": "10.43.0.0/16"}),
    )
    .await?;
    ensure!(
        second.status == 200
            && second.body["data"]["network"]["overlay_prefix"] != n["overlay_prefix"],
        "{:?}",
        second.body
    );

    // Eight instances attach concurrently: distinct /128s inside the overlay, outside the VIP range.
    let tmpl = call("system_create_template", json!({"name": "t"})).await?;
    let node = call("system_create_node", json!({"hostname": "h", "node_template_id": tmpl.body["data"]["template"]["id"], "memory_mb": 2048})).await?;
    let mut instances = Vec::new();
    for _ in 0..8 {
        let i = call(
            "system_provision_instance",
            json!({"node_id": node.body["data"]["node"]["id"]}),
        )
        .await?;
        instances.push(i.body["data"]["id"].clone());
    }
    let attaches = futures::future::join_all(instances.iter().map(|i| {
        call(
            "system_sdwan_attach_peer",
            json!({"network_id": net_id, "node_instance_id": i}),
        )
    }))
    .await;
    let mut addrs = std::collections::BTreeSet::new();
    for a in attaches {
        let a = a?;
        ensure!(a.status == 200, "{:?}", a.body);
        let ip: std::net::Ipv6Addr = a.body["data"]["peer"]["overlay_ip"]
            .as_str()
            .unwrap_or("")
            .parse()?;
        ensure!(overlay.contains(&ip), "{ip} outside {overlay}");
        addrs.insert(ip);
    }
    ensure!(addrs.len() == 8, "two peers got one address: {addrs:?}");
    let again = call(
        "system_sdwan_attach_peer",
        json!({"network_id": net_id, "node_instance_id": instances[0]}),
    )
    .await?;
    ensure!(
        again.status == 200
            && addrs.contains(
                &again.body["data"]["peer"]["overlay_ip"]
                    .as_str()
                    .unwrap_or("")
                    .parse()?
            ),
        "re-attach is not idempotent: {:?}",
        again.body
    );
    let lan_clash = call("system_sdwan_attach_peer", json!({"network_id": net_id, "node_instance_id": instances[1], "lan_subnets": ["10.42.5.0/24"]})).await?;
    ensure!(
        lan_clash.status == 200,
        "an already attached peer answers its attachment: {:?}",
        lan_clash.body
    );
    let extra = call(
        "system_provision_instance",
        json!({"node_id": node.body["data"]["node"]["id"]}),
    )
    .await?;
    let clash = call("system_sdwan_attach_peer", json!({"network_id": net_id, "node_instance_id": extra.body["data"]["id"], "lan_subnets": ["10.42.5.0/24"]})).await?;
    ensure!(
        clash.status == 409 && clash.body["error"]["code"] == "prefix_overlap",
        "{:?}",
        clash.body
    );
    let unknown = call(
        "system_sdwan_attach_peer",
        json!({"network_id": "net-nope", "node_instance_id": instances[0]}),
    )
    .await?;
    ensure!(unknown.status == 404, "{:?}", unknown.body);
    api.node.stop().await
}

/// Appends what the provisioner would for a cluster with one server and one worker.
async fn fake_cluster(
    log: &SharedLog,
    account: &str,
    id: &str,
    decommission: bool,
) -> anyhow::Result<()> {
    use powernode_events::payloads::fleet::CniPlugin;
    use powernode_events::payloads::k3s::*;
    use powernode_events::{AccountId, Actor, Envelope, EventPayload};
    let acct = AccountId::new(account)?;
    let ev = |p: EventPayload| Envelope::new(acct.clone(), Actor::service("provisioner"), p);
    let mut events = vec![
        ev(ClusterBootstrapped {
            cluster_id: id.into(),
            name: format!("{id}-name"),
            bootstrap_instance_id: format!("{id}-srv"),
            api_endpoint: "https://[fd00:abcd:1::100]:6443".into(),
            network_id: None,
            cni_plugin: CniPlugin::Flannel,
            pod_cidr: None,
            server_flags: vec![],
            join_token_fingerprint: String::new(),
        }
        .into()),
        ev(HandshakeReady {
            instance_id: format!("{id}-srv"),
            cluster_id: id.into(),
            node_name: "srv".into(),
            k3s_version: "v1.30.5+k3s1".into(),
            token_fingerprint: None,
        }
        .into()),
        ev(ClusterActivated {
            cluster_id: id.into(),
        }
        .into()),
        ev(NodeRegistered {
            cluster_id: id.into(),
            instance_id: format!("{id}-wrk"),
            role: NodeRole::Worker,
        }
        .into()),
        ev(HandshakeReady {
            instance_id: format!("{id}-wrk"),
            cluster_id: id.into(),
            node_name: "wrk".into(),
            k3s_version: "v1.30.5+k3s1".into(),
            token_fingerprint: None,
        }
        .into()),
    ];
    if decommission {
        events.push(ev(ClusterDecommissioned {
            cluster_id: id.into(),
            released_virtual_ip_id: None,
        }
        .into()));
    }
    for e in events {
        log.append(&e, powernode_log::Expect::Any).await?;
    }
    Ok(())
}

async fn cluster_reads_have_the_runbook_shapes(api: Api) -> anyhow::Result<()> {
    let (a_id, a) = api.account_with_token("a", &[]).await?;
    let (b_id, b) = api.account_with_token("b", &[]).await?;
    fake_cluster(&api.log, &a_id, "cluster-prod", false).await?;
    fake_cluster(&api.log, &a_id, "cluster-old", true).await?;
    fake_cluster(&api.log, &b_id, "cluster-b", false).await?;
    // Wait until the API has applied them (b's cluster was appended last).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = action(api.port, Some(&b), "kubernetes_list_clusters", &json!({})).await?;
        if r.body["data"]["clusters"]
            .as_array()
            .is_some_and(|c| !c.is_empty())
            || std::time::Instant::now() > deadline
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let list = action(api.port, Some(&a), "kubernetes_list_clusters", &json!({})).await?;
    let clusters = list.body["data"]["clusters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ensure!(
        clusters.len() == 1,
        "decommissioned or other account's clusters listed: {:?}",
        list.body
    );
    let c = &clusters[0];
    ensure!(
        c["id"] == "cluster-prod"
            && c["flavor"] == "k3s"
            && c["status"] == "active"
            && c["api_endpoint"] == "https://[fd00:abcd:1::100]:6443"
            && c["node_count"] == 2,
        "{c}"
    );
    let all = action(
        api.port,
        Some(&a),
        "kubernetes_list_clusters",
        &json!({"include_decommissioned": true}),
    )
    .await?;
    ensure!(
        all.body["data"]["clusters"].as_array().map(Vec::len) == Some(2),
        "{:?}",
        all.body
    );
    let one = action(
        api.port,
        Some(&a),
        "kubernetes_get_cluster",
        &json!({"id": "cluster-prod"}),
    )
    .await?;
    ensure!(
        one.body["data"]["cluster"]["name"] == "cluster-prod-name",
        "{:?}",
        one.body
    );
    let nodes = action(
        api.port,
        Some(&a),
        "kubernetes_list_nodes",
        &json!({"cluster_id": "cluster-prod"}),
    )
    .await?;
    let nodes = nodes.body["data"]["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut roles: Vec<_> = nodes
        .iter()
        .map(|n| {
            (
                n["role"].as_str().unwrap_or("").to_string(),
                n["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    roles.sort();
    ensure!(
        roles
            == [
                ("control-plane".into(), "ready".into()),
                ("worker".into(), "ready".into())
            ],
        "{nodes:?}"
    );
    ensure!(
        nodes
            .iter()
            .all(|n| n["instance_id"].is_string() && n["version"] == "v1.30.5+k3s1"),
        "{nodes:?}"
    );
    let other = action(
        api.port,
        Some(&a),
        "kubernetes_get_cluster",
        &json!({"id": "cluster-b"}),
    )
    .await?;
    ensure!(
        other.status == 404,
        "another account's cluster is visible: {:?}",
        other.body
    );
    api.node.stop().await
}

powernode_tests::api_both_backends!(
    sdwan_networks_peers_and_prefix_rules,
    cluster_reads_have_the_runbook_shapes,
);
