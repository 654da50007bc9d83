//! Operator actions over HTTP against a running node (embedded log and a
//! real nats-server): auth, bad input, read-your-writes, account isolation,
//! and that a refused action appends nothing.

use anyhow::ensure;
use powernode_services::cli::{start_node, RunningNode};
use powernode_services::log::embedded::EmbeddedLog;
use powernode_services::log::jetstream::{JetStreamConfig, JetStreamLog};
use powernode_services::log::SharedLog;
use powernode_services::services::ServiceName;
use powernode_tests::http::{action, request};
use powernode_tests::nats::NatsServer;
use serde_json::json;
use std::sync::Arc;

/// A node running the API on a free port, with what keeps it alive.
struct Api {
    node: RunningNode,
    log: SharedLog,
    port: u16,
    admin: String,
    _dir: tempfile::TempDir,
    _nats: Option<NatsServer>,
}

impl Api {
    async fn start(
        log: SharedLog,
        dir: tempfile::TempDir,
        nats: Option<NatsServer>,
    ) -> anyhow::Result<Self> {
        let node = start_node(
            log.clone(),
            dir.path(),
            &[ServiceName::Api],
            "127.0.0.1:0".parse()?,
            "api",
        )
        .await?;
        let port = node.api_addr.expect("the API runs here").port();
        let admin =
            std::fs::read_to_string(node.admin_token_file.as_ref().expect("admin token file"))?
                .trim()
                .to_string();
        Ok(Self {
            node,
            log,
            port,
            admin,
            _dir: dir,
            _nats: nats,
        })
    }

    async fn embedded() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let log: SharedLog = Arc::new(EmbeddedLog::open(&dir.path().join("log"))?);
        Self::start(log, dir, None).await
    }

    async fn jetstream() -> anyhow::Result<Self> {
        let nats = NatsServer::start()?;
        let log: SharedLog =
            Arc::new(JetStreamLog::connect(JetStreamConfig::new(nats.url())).await?);
        Self::start(log, tempfile::tempdir()?, Some(nats)).await
    }

    /// Creates an account and a token for it with `permissions`.
    async fn account_with_token(
        &self,
        name: &str,
        permissions: &[&str],
    ) -> anyhow::Result<(String, String)> {
        let a = action(
            self.port,
            Some(&self.admin),
            "system_create_account",
            &json!({"name": name}),
        )
        .await?;
        ensure!(a.status == 200, "create account: {:?}", a.body);
        let id = a.body["data"]["account"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let t = action(
            self.port,
            Some(&self.admin),
            "system_create_operator_token",
            &json!({"account_id": id, "permissions": permissions}),
        )
        .await?;
        ensure!(t.status == 200, "create token: {:?}", t.body);
        Ok((
            id,
            t.body["data"]["token"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        ))
    }
}

async fn accounts_tokens_and_templates_read_their_writes(api: Api) -> anyhow::Result<()> {
    let (_, token) = api
        .account_with_token("prod", &["system.kubernetes_provision"])
        .await?;
    let created = action(
        api.port,
        Some(&token),
        "system_create_template",
        &json!({"name": "k3s-server"}),
    )
    .await?;
    ensure!(created.status == 200, "{:?}", created.body);
    let id = created.body["data"]["template"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    ensure!(created.body["data"]["template"]["module_assignments"] == json!([]));
    // The very next call sees it.
    let got = action(
        api.port,
        Some(&token),
        "system_get_template",
        &json!({"id": id}),
    )
    .await?;
    ensure!(
        got.status == 200 && got.body["data"]["template"]["name"] == "k3s-server",
        "{:?}",
        got.body
    );
    api.node.stop().await
}

async fn one_account_never_sees_another(api: Api) -> anyhow::Result<()> {
    let (_, a) = api
        .account_with_token("tenant-a", &["system.kubernetes_provision"])
        .await?;
    let (_, b) = api
        .account_with_token("tenant-b", &["system.kubernetes_provision"])
        .await?;
    let created = action(
        api.port,
        Some(&a),
        "system_create_template",
        &json!({"name": "a-only"}),
    )
    .await?;
    let id = created.body["data"]["template"]["id"].clone();
    let seen_by_b = action(
        api.port,
        Some(&b),
        "system_get_template",
        &json!({"id": id}),
    )
    .await?;
    ensure!(
        seen_by_b.status == 404 && seen_by_b.body["error"]["code"] == "not_found",
        "{:?}",
        seen_by_b.body
    );
    api.node.stop().await
}

/// (token, action, body, expected status, expected error code)
type Case<'a> = (Option<&'a str>, &'a str, Vec<u8>, u16, &'a str);

async fn bad_input_is_refused_and_nothing_is_appended(api: Api) -> anyhow::Result<()> {
    let (_, reader) = api.account_with_token("ro", &[]).await?;
    let before = api.log.last_seq().await?;
    let cases: Vec<Case> = vec![
        (
            None,
            "system_create_template",
            br#"{"name":"x"}"#.to_vec(),
            401,
            "unauthorized",
        ),
        (
            Some("pn_not-a-token"),
            "system_create_template",
            br#"{"name":"x"}"#.to_vec(),
            401,
            "unauthorized",
        ),
        (
            Some(&api.admin),
            "system_create_template",
            b"{not json".to_vec(),
            400,
            "malformed_json",
        ),
        (
            Some(&api.admin),
            "system_create_template",
            b"[1,2]".to_vec(),
            400,
            "invalid_arguments",
        ),
        (
            Some(&api.admin),
            "system_create_template",
            br#"{"name":7}"#.to_vec(),
            400,
            "invalid_arguments",
        ),
        (
            Some(&api.admin),
            "system_create_template",
            br#"{}"#.to_vec(),
            400,
            "invalid_arguments",
        ),
        (
            Some(&api.admin),
            "system_create_template",
            br#"{"name":"x","nmae":"y"}"#.to_vec(),
            400,
            "invalid_arguments",
        ),
        (
            Some(&api.admin),
            "system_create_template",
            br#"{"name":"  "}"#.to_vec(),
            400,
            "invalid_arguments",
        ),
        (
            Some(&api.admin),
            "system_no_such_action",
            b"{}".to_vec(),
            404,
            "unknown_action",
        ),
        (
            Some(&reader),
            "system_create_template",
            br#"{"name":"x"}"#.to_vec(),
            403,
            "forbidden",
        ),
        (
            Some(&reader),
            "system_create_account",
            br#"{"name":"x"}"#.to_vec(),
            403,
            "forbidden",
        ),
        (
            Some(&api.admin),
            "system_create_operator_token",
            br#"{"account_id":"acct-nope","permissions":[]}"#.to_vec(),
            404,
            "not_found",
        ),
        (
            Some(&api.admin),
            "system_create_operator_token",
            br#"{"account_id":"system","permissions":["root"]}"#.to_vec(),
            400,
            "invalid_arguments",
        ),
        (
            Some(&api.admin),
            "system_get_template",
            br#"{"id":"tmpl-nope"}"#.to_vec(),
            404,
            "not_found",
        ),
    ];
    for (token, name, body, status, code) in cases {
        let a = request(
            api.port,
            "POST",
            &format!("/v1/actions/{name}"),
            token,
            &body,
        )
        .await?;
        ensure!(
            a.status == status && a.body["error"]["code"] == code,
            "{name} {:?}: expected {status} {code}, got {} {:?}",
            String::from_utf8_lossy(&body),
            a.status,
            a.body
        );
        ensure!(
            !a.body["error"]["message"].as_str().unwrap_or("").is_empty(),
            "no message: {:?}",
            a.body
        );
    }
    let after = api.log.last_seq().await?;
    ensure!(
        before == after,
        "refused actions appended {} events",
        after - before
    );
    api.node.stop().await
}

async fn the_admin_token_survives_a_restart_and_is_never_in_the_log(
    api: Api,
) -> anyhow::Result<()> {
    let Api {
        node,
        log,
        admin,
        _dir,
        _nats,
        ..
    } = api;
    node.stop().await?;
    let node = start_node(
        log.clone(),
        _dir.path(),
        &[ServiceName::Api],
        "127.0.0.1:0".parse()?,
        "api",
    )
    .await?;
    let port = node.api_addr.expect("api").port();
    let again = std::fs::read_to_string(node.admin_token_file.as_ref().expect("file"))?;
    ensure!(again.trim() == admin, "a restart replaced the admin token");
    let a = action(
        port,
        Some(&admin),
        "system_create_account",
        &json!({"name": "after-restart"}),
    )
    .await?;
    ensure!(a.status == 200, "{:?}", a.body);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(node.admin_token_file.as_ref().expect("file"))?
            .permissions()
            .mode();
        ensure!(
            mode & 0o077 == 0,
            "admin.token is readable by others: {mode:o}"
        );
    }
    // Only the fingerprint is in the log.
    let records = log
        .read(1, 10_000, &powernode_services::log::Filter::all())
        .await?;
    for r in &records {
        ensure!(
            !r.bytes.windows(admin.len()).any(|w| w == admin.as_bytes()),
            "the admin token is in the log at seq {}",
            r.seq
        );
    }
    node.stop().await
}

async fn nodes_instances_and_module_assignments(api: Api) -> anyhow::Result<()> {
    let (_, token) = api
        .account_with_token("prod", &["system.kubernetes_provision"])
        .await?;
    let call = |name: &'static str, args: serde_json::Value| {
        let token = token.clone();
        let port = api.port;
        async move { action(port, Some(&token), name, &args).await }
    };
    let tmpl = call("system_create_template", json!({"name": "k3s-server"})).await?;
    let tmpl_id = tmpl.body["data"]["template"]["id"].clone();
    let light = call(
        "system_create_node",
        json!({"hostname": "k3s-edge-1", "node_template_id": tmpl_id, "memory_mb": 2048}),
    )
    .await?;
    ensure!(
        light.status == 200 && light.body["data"]["node"]["memory_mb"] == 2048,
        "{:?}",
        light.body
    );
    let light_id = light.body["data"]["node"]["id"].clone();
    let heavy = call(
        "system_create_node",
        json!({"hostname": "k3s-prod-server-1", "node_template_id": tmpl_id, "memory_mb": 8192}),
    )
    .await?;
    let heavy_id = heavy.body["data"]["node"]["id"].clone();

    // ovn on a lightweight node is refused, and nothing is appended.
    let before = api.log.last_seq().await?;
    let refused = call(
        "system_provision_instance",
        json!({"node_id": light_id, "cni_plugin": "ovn_kubernetes"}),
    )
    .await?;
    ensure!(
        refused.status == 400 && refused.body["error"]["code"] == "CniProfileMismatchError",
        "{:?}",
        refused.body
    );
    ensure!(
        api.log.last_seq().await? == before,
        "a refused provision appended events"
    );
    let bad_cni = call(
        "system_provision_instance",
        json!({"node_id": light_id, "cni_plugin": "calico"}),
    )
    .await?;
    ensure!(
        bad_cni.status == 400 && bad_cni.body["error"]["code"] == "invalid_arguments",
        "{:?}",
        bad_cni.body
    );

    let inst = call(
        "system_provision_instance",
        json!({"node_id": heavy_id, "cni_plugin": "ovn_kubernetes"}),
    )
    .await?;
    ensure!(inst.status == 200, "{:?}", inst.body);
    let credential = inst.body["data"]["enrollment_credential"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    ensure!(
        credential.len() > 20 && inst.body["data"]["id"].is_string(),
        "{:?}",
        inst.body
    );
    ensure!(
        inst.body["data"]["instance"]["status"] == "provisioned",
        "{:?}",
        inst.body
    );
    let records = api
        .log
        .read(1, 10_000, &powernode_services::log::Filter::all())
        .await?;
    ensure!(
        records.iter().all(|r| !r
            .bytes
            .windows(credential.len())
            .any(|w| w == credential.as_bytes())),
        "the enrollment credential is in the log"
    );

    let assigned = call("system_assign_module_to_template", json!({"template_id": tmpl_id, "module_name": "k3s-agent", "config": {"target_cluster_id": "cluster-prod-id"}})).await?;
    ensure!(assigned.status == 200, "{:?}", assigned.body);
    let m = &assigned.body["data"]["template"]["module_assignments"][0];
    ensure!(
        m["module_name"] == "k3s-agent" && m["config"]["target_cluster_id"] == "cluster-prod-id",
        "{:?}",
        assigned.body
    );
    let unknown = call(
        "system_assign_module_to_template",
        json!({"template_id": tmpl_id, "module_name": "k8s-magic"}),
    )
    .await?;
    ensure!(
        unknown.status == 400 && unknown.body["error"]["code"] == "invalid_arguments",
        "{:?}",
        unknown.body
    );
    api.node.stop().await
}

async fn recent_events_are_the_accounts_newest_by_kind_prefix(api: Api) -> anyhow::Result<()> {
    let (_, a) = api
        .account_with_token("a", &["system.kubernetes_provision"])
        .await?;
    let (_, b) = api
        .account_with_token("b", &["system.kubernetes_provision"])
        .await?;
    for i in 0..5 {
        action(
            api.port,
            Some(&a),
            "system_create_template",
            &json!({"name": format!("a{i}")}),
        )
        .await?;
        action(
            api.port,
            Some(&b),
            "system_create_template",
            &json!({"name": format!("b{i}")}),
        )
        .await?;
    }
    let got = action(
        api.port,
        Some(&a),
        "recent_events",
        &json!({"kind_prefix": "system.templ", "limit": 3}),
    )
    .await?;
    ensure!(got.status == 200, "{:?}", got.body);
    let events = got.body["data"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let names: Vec<_> = events
        .iter()
        .map(|e| e["payload"]["name"].as_str().unwrap_or("").to_string())
        .collect();
    ensure!(
        names == ["a2", "a3", "a4"],
        "expected a's newest three in order, got {names:?}"
    );
    ensure!(events
        .iter()
        .all(|e| e["kind"] == "system.template.created" && e["seq"].is_u64()));
    let all = action(api.port, Some(&a), "recent_events", &json!({})).await?;
    let text = all.body.to_string();
    ensure!(
        !text.contains(&a) && !text.contains(&api.admin),
        "a token appears in recent_events"
    );
    let bad = action(api.port, Some(&a), "recent_events", &json!({"limit": 0})).await?;
    ensure!(
        bad.status == 400 && bad.body["error"]["code"] == "invalid_arguments",
        "{:?}",
        bad.body
    );
    api.node.stop().await
}

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
        }
        .into()),
        ev(HandshakeReady {
            instance_id: format!("{id}-srv"),
            cluster_id: id.into(),
            node_name: "srv".into(),
            k3s_version: "v1.30.5+k3s1".into(),
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
        log.append(&e, powernode_services::log::Expect::Any).await?;
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

macro_rules! both_backends {
    ($($check:ident),* $(,)?) => {
        mod embedded {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $check() -> anyhow::Result<()> { super::$check(super::Api::embedded().await?).await } )*
        }
        mod jetstream {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $check() -> anyhow::Result<()> { super::$check(super::Api::jetstream().await?).await } )*
        }
    };
}

both_backends!(
    accounts_tokens_and_templates_read_their_writes,
    one_account_never_sees_another,
    bad_input_is_refused_and_nothing_is_appended,
    the_admin_token_survives_a_restart_and_is_never_in_the_log,
    nodes_instances_and_module_assignments,
    recent_events_are_the_accounts_newest_by_kind_prefix,
    sdwan_networks_peers_and_prefix_rules,
    cluster_reads_have_the_runbook_shapes,
);
