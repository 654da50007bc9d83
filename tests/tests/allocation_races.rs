//! Issue 13, finding 3 and its medium-list neighbours: every allocation
//! from an account's address space (overlay /64s, interface handles, VIP
//! ranges, pod prefixes, LAN subnets) is guarded by one account-level
//! aggregate, so concurrent requests never both win; LAN subnets and
//! IPv4-mapped prefixes are checked like every other prefix; concurrent
//! drains append one event; and a drain that moves a VIP needs
//! `system.sdwan_failover`. Each check runs on the embedded log and on
//! JetStream.

use anyhow::{ensure, Context};
use powernode_events::payloads::sdwan::{VipPurpose, VirtualIpAllocated};
use powernode_events::{AccountId, Actor, Envelope, EventPayload};
use powernode_log::{Expect, Filter};
use powernode_tests::api_support::Api;
use powernode_tests::http::{action, Answer};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

const PROVISION: &str = "system.kubernetes_provision";
const FAILOVER: &str = "system.sdwan_failover";

/// An account with a token, and shorthand to call actions with it.
struct Tenant {
    port: u16,
    token: String,
    account: AccountId,
}

impl Tenant {
    async fn new(api: &Api, name: &str, permissions: &[&str]) -> anyhow::Result<Self> {
        let (account, token) = api.account_with_token(name, permissions).await?;
        Ok(Self {
            port: api.port,
            token,
            account: AccountId::new(account)?,
        })
    }

    /// Another token for the same account.
    async fn token_with(&self, api: &Api, permissions: &[&str]) -> anyhow::Result<String> {
        let t = action(
            api.port,
            Some(&api.admin),
            "system_create_operator_token",
            &json!({"account_id": self.account.as_str(), "permissions": permissions}),
        )
        .await?;
        ensure!(t.status == 200, "create token: {:?}", t.body);
        Ok(t.body["data"]["token"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    async fn call(&self, name: &str, args: Value) -> anyhow::Result<Answer> {
        action(self.port, Some(&self.token), name, &args).await
    }

    async fn ok(&self, name: &str, args: Value) -> anyhow::Result<Value> {
        let a = self.call(name, args).await?;
        ensure!(a.status == 200, "{name}: {} {:?}", a.status, a.body);
        Ok(a.body["data"].clone())
    }

    async fn network(&self, name: &str, pod: Option<&str>) -> anyhow::Result<Value> {
        let mut args = json!({"name": name});
        if let Some(p) = pod {
            args["pod_subnet_prefix"] = json!(p);
        }
        Ok(self.ok("system_sdwan_create_network", args).await?["network"].clone())
    }

    /// `n` freshly provisioned instances.
    async fn instances(&self, n: usize) -> anyhow::Result<Vec<String>> {
        let tmpl = self
            .ok("system_create_template", json!({"name": "t"}))
            .await?;
        let node = self
            .ok(
                "system_create_node",
                json!({"hostname": "h", "node_template_id": tmpl["template"]["id"], "memory_mb": 2048}),
            )
            .await?;
        let mut out = Vec::new();
        for _ in 0..n {
            let i = self
                .ok(
                    "system_provision_instance",
                    json!({"node_id": node["node"]["id"]}),
                )
                .await?;
            out.push(i["id"].as_str().unwrap_or_default().to_string());
        }
        Ok(out)
    }

    /// The account's events of kinds starting with `kind`.
    async fn events(&self, api: &Api, kind: &str) -> anyhow::Result<Vec<Envelope>> {
        let filter = Filter {
            account: Some(self.account.clone()),
            kind_prefix: Some(kind.to_string()),
        };
        let mut out = Vec::new();
        let mut from = 1;
        loop {
            let batch = api.log.read(from, 1000, &filter).await?;
            let Some(last) = batch.last() else { break };
            from = last.seq + 1;
            for r in &batch {
                out.push(Envelope::decode(&r.bytes)?);
            }
        }
        Ok(out)
    }
}

fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// A refusal: `status` and `code`, with a message naming every string in `names`.
fn refused(a: &Answer, status: u16, code: &str, names: &[&str]) -> anyhow::Result<()> {
    let message = a.body["error"]["message"].as_str().unwrap_or_default();
    ensure!(
        a.status == status
            && a.body["error"]["code"] == code
            && names.iter().all(|n| message.contains(n)),
        "expected {status} {code} naming {names:?}, got {} {:?}",
        a.status,
        a.body
    );
    Ok(())
}

/// 50 concurrent network creations: 50 networks, with 50 distinct overlay
/// /64s, handles and VIP ranges (the log and the API agree).
async fn concurrent_creates_allocate_distinct_space(api: Api) -> anyhow::Result<()> {
    let t = Tenant::new(&api, "race", &[PROVISION]).await?;
    let started = std::time::Instant::now();
    let answers = futures::future::join_all((0..50).map(|i| {
        t.call(
            "system_sdwan_create_network",
            json!({"name": format!("n{i}")}),
        )
    }))
    .await;
    eprintln!(
        "50 concurrent creates answered in {:?} ({})",
        started.elapsed(),
        api.log.describe()
    );
    let (mut overlays, mut handles, mut ranges) =
        (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for a in answers {
        let a = a?;
        ensure!(a.status == 200, "{} {:?}", a.status, a.body);
        let n = &a.body["data"]["network"];
        overlays.insert(str_of(&n["overlay_prefix"]));
        handles.insert(str_of(&n["handle"]));
        ranges.insert(str_of(&n["vip_range"]));
    }
    ensure!(
        overlays.len() == 50 && handles.len() == 50 && ranges.len() == 50,
        "50 creates got {} overlays, {} handles, {} VIP ranges",
        overlays.len(),
        handles.len(),
        ranges.len()
    );
    let created = t.events(&api, "system.sdwan.network.created").await?;
    let logged: BTreeSet<String> = created
        .iter()
        .filter_map(|e| match &e.payload {
            EventPayload::NetworkCreated(p) => Some(p.overlay_prefix.to_string()),
            _ => None,
        })
        .collect();
    ensure!(
        created.len() == 50 && logged.len() == 50,
        "the log has {} network.created events with {} distinct overlays",
        created.len(),
        logged.len()
    );
    let listed = t.ok("system_sdwan_list_networks", json!({})).await?;
    let listed = listed["networks"].as_array().cloned().unwrap_or_default();
    ensure!(listed.len() == 50, "list_networks shows {}", listed.len());
    Ok(())
}

/// 20 concurrent creations with one pod prefix: exactly one wins, the rest
/// are refused with `prefix_overlap` naming the prefix and the winner
/// (five rounds at once, one prefix each, to give the race every chance).
async fn concurrent_same_pod_prefix_one_wins(api: Api) -> anyhow::Result<()> {
    let t = Tenant::new(&api, "pods", &[PROVISION]).await?;
    let prefix = |round: usize| format!("10.{}.0.0/16", 200 + round);
    let answers = futures::future::join_all((0..100).map(|i| {
        t.call(
            "system_sdwan_create_network",
            json!({"name": format!("p{i}"), "pod_subnet_prefix": prefix(i % 5)}),
        )
    }))
    .await;
    let answers: Vec<Answer> = answers.into_iter().collect::<Result<_, _>>()?;
    for round in 0..5 {
        let pod = prefix(round);
        let mine: Vec<&Answer> = answers.iter().skip(round).step_by(5).collect();
        let winners: Vec<&&Answer> = mine.iter().filter(|a| a.status == 200).collect();
        ensure!(
            winners.len() == 1,
            "{} of 20 creates with {pod} won",
            winners.len()
        );
        let winner = str_of(&winners[0].body["data"]["network"]["id"]);
        for a in mine.iter().filter(|a| a.status != 200) {
            refused(a, 409, "prefix_overlap", &[&pod, &winner])?;
        }
    }
    Ok(())
}

/// 10 networks each set to the same pod prefix at once
/// (`system_sdwan_update_network`): exactly one wins.
async fn concurrent_pod_prefix_updates_one_wins(api: Api) -> anyhow::Result<()> {
    let t = Tenant::new(&api, "upd", &[PROVISION]).await?;
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(str_of(&t.network(&format!("u{i}"), None).await?["id"]));
    }
    let answers = futures::future::join_all(ids.iter().map(|id| {
        t.call(
            "system_sdwan_update_network",
            json!({"network_id": id, "pod_subnet_prefix": "10.201.0.0/16"}),
        )
    }))
    .await;
    let answers: Vec<Answer> = answers.into_iter().collect::<Result<_, _>>()?;
    let winners: Vec<&Answer> = answers.iter().filter(|a| a.status == 200).collect();
    ensure!(
        winners.len() == 1,
        "{} of 10 updates to 10.201.0.0/16 won: {:?}",
        winners.len(),
        answers.iter().map(|a| &a.body).collect::<Vec<_>>()
    );
    let winner = str_of(&winners[0].body["data"]["network"]["id"]);
    for a in answers.iter().filter(|a| a.status != 200) {
        refused(a, 409, "prefix_overlap", &["10.201.0.0/16", &winner])?;
    }
    let listed = t.ok("system_sdwan_list_networks", json!({})).await?;
    let with_prefix = listed["networks"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n["pod_subnet_prefix"] == "10.201.0.0/16")
        .count();
    ensure!(
        with_prefix == 1,
        "{with_prefix} networks hold 10.201.0.0/16"
    );
    Ok(())
}

/// 10 instances attach at once with the same LAN subnet: exactly one gets
/// it; and a pod prefix raced against a LAN subnet never lands on both.
async fn concurrent_identical_lans_one_wins(api: Api) -> anyhow::Result<()> {
    let t = Tenant::new(&api, "lan", &[PROVISION]).await?;
    let net = str_of(&t.network("lan-net", None).await?["id"]);
    let instances = t.instances(20).await?;
    let answers = futures::future::join_all(instances[..10].iter().map(|i| {
        t.call(
            "system_sdwan_attach_peer",
            json!({"network_id": net, "node_instance_id": i, "lan_subnets": ["192.168.50.0/24"]}),
        )
    }))
    .await;
    let answers: Vec<Answer> = answers.into_iter().collect::<Result<_, _>>()?;
    let winners = answers.iter().filter(|a| a.status == 200).count();
    ensure!(
        winners == 1,
        "{winners} of 10 attaches with 192.168.50.0/24 won: {:?}",
        answers.iter().map(|a| &a.body).collect::<Vec<_>>()
    );
    for a in answers.iter().filter(|a| a.status != 200) {
        refused(a, 409, "prefix_overlap", &["192.168.50.0/24"])?;
    }

    // A LAN and a pod prefix that overlap, raced 10 times: never both.
    for round in 0..10u8 {
        let lan = format!("172.{}.0.0/24", 16 + round);
        let pod = format!("172.{}.0.0/16", 16 + round);
        let other = str_of(&t.network(&format!("r{round}"), None).await?["id"]);
        let instance = &instances[10 + usize::from(round)];
        let (attach, update) = tokio::join!(
            t.call(
                "system_sdwan_attach_peer",
                json!({"network_id": net, "node_instance_id": instance, "lan_subnets": [lan]}),
            ),
            t.call(
                "system_sdwan_update_network",
                json!({"network_id": other, "pod_subnet_prefix": pod}),
            ),
        );
        let (attach, update) = (attach?, update?);
        ensure!(
            (attach.status == 200) != (update.status == 200),
            "round {round}: attach {} {:?} / update {} {:?}",
            attach.status,
            attach.body,
            update.status,
            update.body
        );
        let loser = if attach.status == 200 {
            &update
        } else {
            &attach
        };
        refused(loser, 409, "prefix_overlap", &[&lan, &pod])?;
    }
    Ok(())
}

/// A LAN subnet on the network's own overlay or VIP range, on another
/// network's overlay, or equal to / inside another peer's LAN is refused
/// with `prefix_overlap` naming both prefixes; nothing is appended.
async fn lan_subnets_stay_clear_of_every_allocation(api: Api) -> anyhow::Result<()> {
    let t = Tenant::new(&api, "lans", &[PROVISION]).await?;
    let n = t.network("a", None).await?;
    let m = t.network("b", None).await?;
    let (net, overlay, vips) = (
        str_of(&n["id"]),
        str_of(&n["overlay_prefix"]),
        str_of(&n["vip_range"]),
    );
    let other_overlay = str_of(&m["overlay_prefix"]);
    let i = t.instances(3).await?;
    let attach = |inst: &str, lans: Vec<String>| {
        t.call(
            "system_sdwan_attach_peer",
            json!({"network_id": net, "node_instance_id": inst, "lan_subnets": lans}),
        )
    };
    let before = api.log.last_seq().await?;
    refused(
        &attach(&i[0], vec![overlay.clone()]).await?,
        409,
        "prefix_overlap",
        &[&overlay],
    )?;
    refused(
        &attach(&i[0], vec![vips.clone()]).await?,
        409,
        "prefix_overlap",
        &[&vips],
    )?;
    refused(
        &attach(&i[0], vec![other_overlay.clone()]).await?,
        409,
        "prefix_overlap",
        &[&other_overlay, &str_of(&m["id"])],
    )?;
    // Two overlapping LANs in one request.
    refused(
        &attach(
            &i[0],
            vec!["10.9.0.0/16".to_string(), "10.9.3.0/24".to_string()],
        )
        .await?,
        409,
        "prefix_overlap",
        &["10.9.0.0/16", "10.9.3.0/24"],
    )?;
    ensure!(
        api.log.last_seq().await? == before,
        "refused attaches appended events"
    );
    let first = attach(&i[0], vec!["192.168.10.0/24".to_string()]).await?;
    ensure!(first.status == 200, "{:?}", first.body);
    let peer = str_of(&first.body["data"]["peer"]["id"]);
    refused(
        &attach(&i[1], vec!["192.168.10.0/24".to_string()]).await?,
        409,
        "prefix_overlap",
        &["192.168.10.0/24", &peer],
    )?;
    refused(
        &attach(&i[2], vec!["192.168.10.128/25".to_string()]).await?,
        409,
        "prefix_overlap",
        &["192.168.10.128/25", "192.168.10.0/24", &peer],
    )?;
    // One instance attached 10 times at once, half of them with a LAN
    // (appended on another aggregate): one peer, one event, one answer.
    let inst = &t.instances(1).await?[0];
    let answers = futures::future::join_all((0..10).map(|k| {
        let lans: Vec<&str> = if k % 2 == 0 {
            vec!["172.30.77.0/24"]
        } else {
            vec![]
        };
        t.call(
            "system_sdwan_attach_peer",
            json!({"network_id": net, "node_instance_id": inst, "lan_subnets": lans}),
        )
    }))
    .await;
    let mut ids = BTreeSet::new();
    for a in answers {
        let a = a?;
        ensure!(a.status == 200, "{} {:?}", a.status, a.body);
        ids.insert(str_of(&a.body["data"]["peer"]["id"]));
    }
    let attached = t
        .events(&api, "system.sdwan.peer.attached")
        .await?
        .into_iter()
        .filter(|e| matches!(&e.payload, EventPayload::PeerAttached(p) if p.instance_id == *inst))
        .count();
    ensure!(
        ids.len() == 1 && attached == 1,
        "one instance attached at once: {} peers answered, {attached} events",
        ids.len()
    );
    // Re-attaching the same instance answers its peer, LANs and all.
    let again = attach(&i[0], vec!["192.168.10.0/24".to_string()]).await?;
    ensure!(
        again.status == 200 && str_of(&again.body["data"]["peer"]["id"]) == peer,
        "{:?}",
        again.body
    );
    // Pod prefixes stay clear of LANs, too.
    refused(
        &t.call(
            "system_sdwan_create_network",
            json!({"name": "c", "pod_subnet_prefix": "192.168.0.0/16"}),
        )
        .await?,
        409,
        "prefix_overlap",
        &["192.168.0.0/16", "192.168.10.0/24"],
    )?;
    Ok(())
}

/// An IPv4-mapped IPv6 prefix is compared as the IPv4 prefix it maps: one
/// over `10.42.0.0/16` is refused with `prefix_overlap` naming both.
async fn ipv4_mapped_prefixes_are_compared_as_ipv4(api: Api) -> anyhow::Result<()> {
    let t = Tenant::new(&api, "mapped", &[PROVISION]).await?;
    let n = t.network("a", Some("10.42.0.0/16")).await?;
    let other = t.network("b", None).await?;
    let i = t.instances(1).await?;
    let before = api.log.last_seq().await?;
    for mapped in [
        "::ffff:10.42.0.0/112",
        "::ffff:10.42.7.0/120",
        "::ffff:0.0.0.0/96",
    ] {
        refused(
            &t.call(
                "system_sdwan_create_network",
                json!({"name": "b", "pod_subnet_prefix": mapped}),
            )
            .await?,
            409,
            "prefix_overlap",
            &[mapped, "10.42.0.0/16"],
        )?;
    }
    refused(
        &t.call(
            "system_sdwan_update_network",
            json!({"network_id": other["id"], "pod_subnet_prefix": "::ffff:10.42.0.0/112"}),
        )
        .await?,
        409,
        "prefix_overlap",
        &["::ffff:10.42.0.0/112", "10.42.0.0/16"],
    )?;
    refused(
        &t.call(
            "system_sdwan_attach_peer",
            json!({"network_id": n["id"], "node_instance_id": i[0], "lan_subnets": ["::ffff:10.42.1.0/120"]}),
        )
        .await?,
        409,
        "prefix_overlap",
        &["::ffff:10.42.1.0/120", "10.42.0.0/16"],
    )?;
    // One that overlaps nothing is still refused: it is to be written as IPv4.
    refused(
        &t.call(
            "system_sdwan_create_network",
            json!({"name": "c", "pod_subnet_prefix": "::ffff:10.77.0.0/112"}),
        )
        .await?,
        400,
        "invalid_arguments",
        &["10.77.0.0/16"],
    )?;
    ensure!(
        api.log.last_seq().await? == before,
        "refused requests appended events"
    );
    Ok(())
}

/// 50 concurrent drains of one instance: one `instance.drained` event, one
/// `changed: true`, 49 `changed: false`. Four instances at once, three
/// rounds: without the guard the race is lost in most rounds, not all.
async fn concurrent_drains_append_once(api: Api) -> anyhow::Result<()> {
    let t = Tenant::new(&api, "drain", &[PROVISION]).await?;
    for round in 0..3 {
        let instances = t.instances(4).await?;
        let answers = futures::future::join_all(
            (0..200).map(|k| t.call("system_drain_instance", json!({"id": instances[k % 4]}))),
        )
        .await;
        let answers: Vec<Answer> = answers.into_iter().collect::<Result<_, _>>()?;
        let drained = t.events(&api, "system.instance.drained").await?;
        for (n, i) in instances.iter().enumerate() {
            let mut changed = 0;
            for a in answers.iter().skip(n).step_by(4) {
                ensure!(a.status == 200, "{} {:?}", a.status, a.body);
                ensure!(
                    a.body["data"]["instance"]["status"] == "drained",
                    "{:?}",
                    a.body
                );
                if a.body["data"]["changed"] == true {
                    changed += 1;
                }
            }
            let events = drained
                .iter()
                .filter(|e| matches!(&e.payload, EventPayload::InstanceDrained(p) if p.instance_id == *i))
                .count();
            ensure!(
                events == 1 && changed == 1,
                "round {round}: 50 concurrent drains of {i} appended {events} drain events and answered changed:true {changed} times"
            );
        }
    }
    Ok(())
}

/// Draining an instance that holds a VIP moves the VIP, so it needs
/// `system.sdwan_failover` as well as provision; draining a non-holder
/// needs provision only.
async fn draining_a_vip_holder_needs_failover(api: Api) -> anyhow::Result<()> {
    let t = Tenant::new(&api, "holder", &[PROVISION]).await?;
    let net = str_of(&t.network("v", None).await?["id"]);
    let i = t.instances(3).await?;
    let mut peers = Vec::new();
    for inst in &i {
        let p = t
            .ok(
                "system_sdwan_attach_peer",
                json!({"network_id": net, "node_instance_id": inst}),
            )
            .await?;
        peers.push(str_of(&p["peer"]["id"]));
    }
    // The VIP as the sdwan service would allocate it at a bootstrap of i[0].
    let vip = Envelope::new(
        t.account.clone(),
        Actor::service("sdwan"),
        VirtualIpAllocated {
            virtual_ip_id: "vip-drain-test".into(),
            network_id: net.clone(),
            vip: "fd00::100".parse()?,
            purpose: VipPurpose::K3sApiEndpoint,
            cluster_id: "cluster-drain-test".into(),
            primary_holder_peer_id: peers[0].clone(),
        },
    );
    api.log.append(&vip, Expect::Any).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let v = t
            .call(
                "system_sdwan_get_virtual_ip",
                json!({"cluster_id": "cluster-drain-test"}),
            )
            .await?;
        if v.status == 200 {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the API never showed the VIP: {:?}",
            v.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = api.log.last_seq().await?;
    refused(
        &t.call("system_drain_instance", json!({"id": i[0]})).await?,
        403,
        "forbidden",
        &[FAILOVER, "vip-drain-test"],
    )?;
    ensure!(
        api.log.last_seq().await? == before,
        "a refused drain appended"
    );
    // A non-holder drains with provision alone.
    let other = t.ok("system_drain_instance", json!({"id": i[1]})).await?;
    ensure!(other["changed"] == true, "{other}");
    // With both permissions the holder drains.
    let both = t.token_with(&api, &[PROVISION, FAILOVER]).await?;
    let a = action(
        api.port,
        Some(&both),
        "system_drain_instance",
        &json!({"id": i[0]}),
    )
    .await?;
    ensure!(
        a.status == 200 && a.body["data"]["changed"] == true,
        "{:?}",
        a.body
    );
    // Failover alone is not enough: draining is provisioning.
    let only_failover = t.token_with(&api, &[FAILOVER]).await?;
    let a = action(
        api.port,
        Some(&only_failover),
        "system_drain_instance",
        &json!({"id": i[2]}),
    )
    .await?;
    refused(&a, 403, "forbidden", &[PROVISION]).context("failover-only token")?;
    Ok(())
}

powernode_tests::api_both_backends!(
    concurrent_creates_allocate_distinct_space,
    concurrent_same_pod_prefix_one_wins,
    concurrent_pod_prefix_updates_one_wins,
    concurrent_identical_lans_one_wins,
    lan_subnets_stay_clear_of_every_allocation,
    ipv4_mapped_prefixes_are_compared_as_ipv4,
    concurrent_drains_append_once,
    draining_a_vip_holder_needs_failover,
);
