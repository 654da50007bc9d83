//! Operator access grants against a real nats-server: creation with and
//! without the caller's key (a platform-made private key only in the
//! answer, in no record of the log), the wg-quick file, concurrent
//! creations, list, revoke, expiry (once, across a restart and two sdwan
//! replicas), and bad input that appends nothing.
//!
//! The gateway needs a registered WireGuard key: the harness writes
//! `system.sdwan.wireguard_key.registered` straight to the log (what the
//! intake appends when an agent submits it signed).

use anyhow::{ensure, Context};
use powernode_events::payloads::sdwan::{AccessGrantEnd, WireguardKeyRegistered};
use powernode_events::wireguard::{decode_base64, encode_base64};
use powernode_events::{AccountId, Actor, Envelope, EventPayload};
use powernode_log::jetstream::JetStreamLog;
use powernode_log::{Expect, Filter, SharedLog};
use powernode_server::node::{start_node_with, NodeExtras, RunningNode};
use powernode_server::services::ServiceName;
use powernode_tests::http::{action, Answer};
use powernode_tests::nats::NatsServer;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv6Addr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The line a config whose key the caller brought has instead of its
/// private key (`powernode_actions::grants::PRIVATE_KEY_PLACEHOLDER`).
const PLACEHOLDER: &str = "# PrivateKey = <the private key of this grant's public key; fill it in>";

/// A node running the API and the sdwan service (grant expiry), or only
/// an sdwan replica.
struct Node {
    node: Option<RunningNode>,
    port: u16,
    admin: String,
}

impl Node {
    async fn stop(&mut self) -> anyhow::Result<()> {
        match self.node.take() {
            Some(n) => n.stop().await,
            None => Ok(()),
        }
    }
}

async fn start(log: &SharedLog, dir: &Path, replica: Option<&str>) -> anyhow::Result<Node> {
    let services: &[ServiceName] = if replica.is_some() {
        &[ServiceName::Sdwan]
    } else {
        &[ServiceName::Sdwan, ServiceName::Api]
    };
    let node = start_node_with(
        log.clone(),
        dir,
        services,
        "127.0.0.1:0".parse()?,
        replica.unwrap_or("api"),
        NodeExtras {
            replica: replica.map(str::to_string),
            ..NodeExtras::default()
        },
    )
    .await?;
    let (port, admin) = match (&node.api_addr, &node.admin_token_file) {
        (Some(addr), Some(file)) => (
            addr.port(),
            std::fs::read_to_string(file)?.trim().to_string(),
        ),
        _ => (0, String::new()),
    };
    Ok(Node {
        node: Some(node),
        port,
        admin,
    })
}

/// What a test works with: the log, a node, an account's token and a
/// network with two data-plane peers (one with a LAN) and a pod prefix.
struct World {
    log: SharedLog,
    node: Node,
    account: String,
    token: String,
    network: Value,
    /// instance id -> (public key, endpoint)
    keys: BTreeMap<String, (String, String)>,
    peers: Vec<Value>,
    _dir: tempfile::TempDir,
    _nats: NatsServer,
}

impl World {
    async fn call(&self, name: &str, args: Value) -> anyhow::Result<Answer> {
        action(self.node.port, Some(&self.token), name, &args).await
    }

    async fn ok(&self, name: &str, args: Value) -> anyhow::Result<Value> {
        let a = self.call(name, args).await?;
        ensure!(a.status == 200, "{name}: {} {}", a.status, a.body);
        Ok(a.body["data"].clone())
    }

    /// Waits until the API has applied `seq`.
    async fn applied(&self, seq: u64) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let h = action(
                self.node.port,
                Some(&self.node.admin),
                "system_state_hash",
                &json!({}),
            )
            .await?;
            if h.body["data"]["applied"].as_u64().unwrap_or(0) >= seq {
                return Ok(());
            }
            ensure!(Instant::now() < deadline, "the API never applied seq {seq}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Registers a WireGuard key for `instance` (as the intake would).
    async fn register_key(&mut self, instance: &str, endpoint: &str) -> anyhow::Result<()> {
        let public_key = encode_base64(&rand::random::<[u8; 32]>());
        let event = Envelope::new(
            AccountId::new(&self.account)?,
            Actor::service("test-intake"),
            WireguardKeyRegistered {
                instance_id: instance.to_string(),
                public_key: public_key.clone(),
                endpoint: endpoint.to_string(),
            },
        );
        let seq = self.log.append(&event, Expect::Any).await?.seq;
        self.applied(seq).await?;
        self.keys
            .insert(instance.to_string(), (public_key, endpoint.to_string()));
        Ok(())
    }

    async fn last_seq(&self) -> anyhow::Result<u64> {
        Ok(self.log.last_seq().await?)
    }

    /// Every record of the log, as raw bytes and kind.
    async fn records(&self) -> anyhow::Result<Vec<powernode_log::Record>> {
        Ok(self.log.read(1, 100_000, &Filter::all()).await?)
    }
}

async fn world() -> anyhow::Result<World> {
    let nats = NatsServer::start()?;
    let log: SharedLog =
        Arc::new(JetStreamLog::connect(powernode_tests::nats::log_config(nats.url())).await?);
    let dir = tempfile::tempdir()?;
    let node = start(&log, dir.path(), None).await?;
    let admin = node.admin.clone();
    let port = node.port;
    let a = action(
        port,
        Some(&admin),
        "system_create_account",
        &json!({"name": "ops"}),
    )
    .await?;
    ensure!(a.status == 200, "{:?}", a.body);
    let account = a.body["data"]["account"]["id"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let t = action(
        port,
        Some(&admin),
        "system_create_operator_token",
        &json!({"account_id": account, "permissions": ["system.kubernetes_provision"]}),
    )
    .await?;
    ensure!(t.status == 200, "{:?}", t.body);
    let token = t.body["data"]["token"].as_str().unwrap_or("").to_string();
    let mut w = World {
        log,
        node,
        account,
        token,
        network: Value::Null,
        keys: BTreeMap::new(),
        peers: Vec::new(),
        _dir: dir,
        _nats: nats,
    };
    w.network = w
        .ok(
            "system_sdwan_create_network",
            json!({"name": "prod", "pod_subnet_prefix": "10.42.0.0/16"}),
        )
        .await?["network"]
        .clone();
    let tmpl = w.ok("system_create_template", json!({"name": "t"})).await?;
    let node = w
        .ok(
            "system_create_node",
            json!({"hostname": "h", "node_template_id": tmpl["template"]["id"], "memory_mb": 2048}),
        )
        .await?;
    for lans in [json!([]), json!(["192.168.50.0/24"])] {
        let i = w
            .ok(
                "system_provision_instance",
                json!({"node_id": node["node"]["id"]}),
            )
            .await?;
        let p = w
            .ok(
                "system_sdwan_attach_peer",
                json!({"network_id": w.network["id"], "node_instance_id": i["id"], "lan_subnets": lans}),
            )
            .await?;
        w.peers.push(p["peer"].clone());
    }
    Ok(w)
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// A wg-quick file as sections of `key = value` (comments dropped).
fn parse_wg_quick(text: &str) -> anyhow::Result<Vec<(String, BTreeMap<String, String>)>> {
    let mut out: Vec<(String, BTreeMap<String, String>)> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            out.push((name.to_string(), BTreeMap::new()));
            continue;
        }
        let (k, v) = line
            .split_once(" = ")
            .with_context(|| format!("not `key = value`: {line:?}"))?;
        let section = out.last_mut().context("a key before any section")?;
        ensure!(
            section.1.insert(k.to_string(), v.to_string()).is_none(),
            "{k} repeated"
        );
    }
    Ok(out)
}

fn public_of(private: &str) -> anyhow::Result<String> {
    let bytes: [u8; 32] = decode_base64(private)
        .context("the private key is not base64")?
        .try_into()
        .map_err(|_| anyhow::anyhow!("the private key is not 32 bytes"))?;
    let public = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(bytes));
    Ok(encode_base64(public.as_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_are_created_listed_and_revoked() -> anyhow::Result<()> {
    let mut w = world().await?;
    let net_id = s(&w.network["id"]);
    let overlay: ipnet::Ipv6Net = s(&w.network["overlay_prefix"]).parse()?;
    let vip_range: ipnet::Ipv6Net = s(&w.network["vip_range"]).parse()?;

    // No peer has a key yet: no gateway, nothing appended.
    let before = w.last_seq().await?;
    let none = w
        .call(
            "system_sdwan_create_access_grant",
            json!({"network_id": net_id, "name": "laptop"}),
        )
        .await?;
    ensure!(
        none.status == 409
            && none.body["error"]["code"] == "no_gateway"
            && s(&none.body["error"]["message"]).contains("has registered a WireGuard key"),
        "{:?}",
        none.body
    );
    ensure!(w.last_seq().await? == before, "a refused grant appended");

    let (gw_instance, other_instance) =
        (s(&w.peers[0]["instance_id"]), s(&w.peers[1]["instance_id"]));
    w.register_key(&gw_instance, "10.99.0.2:51820").await?;
    w.register_key(&other_instance, "10.99.0.3:51820").await?;

    // Without a public key: the platform makes the pair; the private key is
    // only in this answer.
    let made = w
        .ok(
            "system_sdwan_create_access_grant",
            json!({"network_id": net_id, "name": "laptop", "ttl_secs": 3600}),
        )
        .await?;
    let grant = &made["grant"];
    let config = s(&made["wireguard_config"]);
    let sections = parse_wg_quick(&config)?;
    ensure!(
        sections.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>() == ["Interface", "Peer"],
        "{config}"
    );
    let (iface, peer) = (&sections[0].1, &sections[1].1);
    let private = iface.get("PrivateKey").context("no PrivateKey")?.clone();
    ensure!(
        public_of(&private)? == s(&grant["public_key"]),
        "the key pair does not match"
    );
    let address: Ipv6Addr = s(&grant["address"]).parse()?;
    ensure!(
        iface.get("Address") == Some(&format!("{address}/128")),
        "{config}"
    );
    ensure!(
        overlay.contains(&address) && !vip_range.contains(&address),
        "{address}"
    );
    let peer_ips: BTreeSet<Ipv6Addr> = w
        .peers
        .iter()
        .map(|p| s(&p["overlay_ip"]).parse())
        .collect::<Result<_, _>>()?;
    ensure!(!peer_ips.contains(&address), "a grant got a peer's address");
    // The one peer is the gateway (the oldest data-plane peer: no VIPs here).
    let (gw_key, gw_endpoint) = &w.keys[&gw_instance];
    ensure!(grant["gateway_peer_id"] == w.peers[0]["id"], "{grant}");
    ensure!(peer.get("PublicKey") == Some(gw_key), "{config}");
    ensure!(peer.get("Endpoint") == Some(gw_endpoint), "{config}");
    ensure!(
        peer.get("PersistentKeepalive").map(String::as_str) == Some("25"),
        "{config}"
    );
    let allowed: BTreeSet<&str> = peer
        .get("AllowedIPs")
        .context("no AllowedIPs")?
        .split(", ")
        .collect();
    let expected: BTreeSet<String> = [
        overlay.to_string(),
        "10.42.0.0/16".into(),
        "192.168.50.0/24".into(),
    ]
    .into();
    ensure!(
        allowed == expected.iter().map(String::as_str).collect(),
        "AllowedIPs {allowed:?}, expected {expected:?}"
    );
    ensure!(
        grant["status"] == "active" && grant["expires_at"].is_string(),
        "{grant}"
    );

    // The private key is in no record of the log (raw bytes or base64).
    let raw = decode_base64(&private).context("base64")?;
    for r in w.records().await? {
        let b = &r.bytes[..];
        ensure!(
            !b.windows(private.len()).any(|x| x == private.as_bytes())
                && !b.windows(raw.len()).any(|x| x == &raw[..]),
            "record {} ({}) holds the private key",
            r.seq,
            r.kind()
        );
    }
    let tail = w.ok("recent_events", json!({"limit": 1000})).await?;
    ensure!(
        !tail.to_string().contains(&private),
        "recent_events shows the private key"
    );

    // With the caller's key: the file has the placeholder, no private key.
    let own_key = encode_base64(&rand::random::<[u8; 32]>());
    let brought = w
        .ok(
            "system_sdwan_create_access_grant",
            json!({"network_id": net_id, "name": "ci", "public_key": own_key}),
        )
        .await?;
    let text = s(&brought["wireguard_config"]);
    ensure!(
        text.lines().any(|l| l == PLACEHOLDER)
            && !text.lines().any(|l| l.starts_with("PrivateKey")),
        "{text}"
    );
    ensure!(
        brought["grant"]["public_key"] == own_key.as_str(),
        "{brought}"
    );
    ensure!(brought["grant"]["expires_at"].is_null(), "{brought}");

    // Eight concurrent creations: eight distinct addresses.
    let answers = futures::future::join_all((0..8).map(|k| {
        w.call(
            "system_sdwan_create_access_grant",
            json!({"network_id": net_id, "name": format!("c{k}")}),
        )
    }))
    .await;
    let mut addrs = BTreeSet::from([
        address,
        brought["grant"]["address"].as_str().unwrap_or("").parse()?,
    ]);
    for a in answers {
        let a = a?;
        ensure!(a.status == 200, "{:?}", a.body);
        ensure!(
            addrs.insert(s(&a.body["data"]["grant"]["address"]).parse()?),
            "two grants got one address: {:?}",
            a.body
        );
    }
    ensure!(addrs.len() == 10);

    // List: all ten, oldest first; by network; an unknown network is 404.
    let list = w.ok("system_sdwan_list_access_grants", json!({})).await?;
    let grants = list["grants"].as_array().context("grants")?;
    ensure!(
        grants.len() == 10 && grants[0]["id"] == grant["id"],
        "{list}"
    );
    ensure!(grants.iter().all(|g| g["status"] == "active"), "{list}");
    let by_net = w
        .ok(
            "system_sdwan_list_access_grants",
            json!({"network_id": net_id}),
        )
        .await?;
    ensure!(
        by_net["grants"].as_array().map(Vec::len) == Some(10),
        "{by_net}"
    );
    let unknown = w
        .call(
            "system_sdwan_list_access_grants",
            json!({"network_id": "net-nope"}),
        )
        .await?;
    ensure!(unknown.status == 404, "{:?}", unknown.body);

    // Revoke, then revoke again: refused, nothing appended.
    let revoked = w
        .ok(
            "system_sdwan_revoke_access_grant",
            json!({"grant_id": grant["id"]}),
        )
        .await?;
    ensure!(revoked["grant"]["status"] == "revoked", "{revoked}");
    let before = w.last_seq().await?;
    let again = w
        .call(
            "system_sdwan_revoke_access_grant",
            json!({"grant_id": grant["id"]}),
        )
        .await?;
    ensure!(
        again.status == 409 && again.body["error"]["code"] == "already_revoked",
        "{:?}",
        again.body
    );
    let unknown = w
        .call(
            "system_sdwan_revoke_access_grant",
            json!({"grant_id": "grant-nope"}),
        )
        .await?;
    ensure!(unknown.status == 404, "{:?}", unknown.body);
    ensure!(w.last_seq().await? == before, "a refused revoke appended");
    let list = w.ok("system_sdwan_list_access_grants", json!({})).await?;
    ensure!(
        list["grants"][0]["status"] == "revoked" && list["grants"][1]["status"] == "active",
        "{list}"
    );
    w.node.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_appends_nothing() -> anyhow::Result<()> {
    let mut w = world().await?;
    let net_id = s(&w.network["id"]);
    let gw_instance = s(&w.peers[0]["instance_id"]);
    w.register_key(&gw_instance, "10.99.0.2:51820").await?;
    let peer_key = w.keys[&gw_instance].0.clone();

    // Another account's network does not exist for this one.
    let admin = w.node.admin.clone();
    let port = w.node.port;
    let other = action(
        port,
        Some(&admin),
        "system_create_account",
        &json!({"name": "other"}),
    )
    .await?;
    let other_id = s(&other.body["data"]["account"]["id"]);
    let t = action(
        port,
        Some(&admin),
        "system_create_operator_token",
        &json!({"account_id": other_id, "permissions": ["system.kubernetes_provision"]}),
    )
    .await?;
    let other_token = s(&t.body["data"]["token"]);
    let reader = action(
        port,
        Some(&admin),
        "system_create_operator_token",
        &json!({"account_id": w.account, "permissions": []}),
    )
    .await?;
    let reader_token = s(&reader.body["data"]["token"]);

    let before = w.last_seq().await?;
    let cross = action(
        port,
        Some(&other_token),
        "system_sdwan_create_access_grant",
        &json!({"network_id": net_id, "name": "x"}),
    )
    .await?;
    ensure!(
        cross.status == 404 && cross.body["error"]["code"] == "not_found",
        "{:?}",
        cross.body
    );
    let forbidden = action(
        port,
        Some(&reader_token),
        "system_sdwan_create_access_grant",
        &json!({"network_id": net_id, "name": "x"}),
    )
    .await?;
    ensure!(forbidden.status == 403, "{:?}", forbidden.body);

    let bad = [
        (
            json!({"network_id": net_id, "name": "x", "public_key": "not base64!"}),
            "public_key",
        ),
        (
            json!({"network_id": net_id, "name": "x", "public_key": encode_base64(&[1; 31])}),
            "32",
        ),
        (
            json!({"network_id": net_id, "name": "x", "public_key": encode_base64(&[1; 33])}),
            "32",
        ),
        (
            json!({"network_id": net_id, "name": "x", "public_key": peer_key}),
            "public_key",
        ),
        (
            json!({"network_id": net_id, "name": "x", "ttl_secs": 0}),
            "ttl_secs",
        ),
        (
            json!({"network_id": net_id, "name": "x", "ttl_secs": 10_000_000_000u64}),
            "ttl_secs",
        ),
        (
            json!({"network_id": net_id, "name": "x", "ttl_secs": -5}),
            "ttl_secs",
        ),
        (json!({"network_id": net_id, "name": ""}), "name"),
        (json!({"network_id": net_id, "name": "  "}), "name"),
        (
            json!({"network_id": net_id, "name": "n".repeat(129)}),
            "name",
        ),
        (json!({"network_id": net_id}), "name"),
        (
            json!({"network_id": net_id, "name": "x", "extra": 1}),
            "extra",
        ),
    ];
    for (args, mentions) in bad {
        let a = w
            .call("system_sdwan_create_access_grant", args.clone())
            .await?;
        ensure!(
            a.status == 400
                && a.body["error"]["code"] == "invalid_arguments"
                && s(&a.body["error"]["message"]).contains(mentions),
            "{args}: {:?}",
            a.body
        );
    }
    let unknown = w
        .call(
            "system_sdwan_create_access_grant",
            json!({"network_id": "net-nope", "name": "x"}),
        )
        .await?;
    ensure!(unknown.status == 404, "{:?}", unknown.body);

    // A grant of this account cannot be revoked from another.
    let g = w
        .ok(
            "system_sdwan_create_access_grant",
            json!({"network_id": net_id, "name": "mine"}),
        )
        .await?;
    let before_revoke = w.last_seq().await?;
    let cross = action(
        port,
        Some(&other_token),
        "system_sdwan_revoke_access_grant",
        &json!({"grant_id": g["grant"]["id"]}),
    )
    .await?;
    ensure!(cross.status == 404, "{:?}", cross.body);
    ensure!(
        w.last_seq().await? == before_revoke,
        "a refused revoke appended"
    );
    ensure!(before < before_revoke, "the good grant was not appended");
    w.node.stop().await
}

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
            json!({"network_id": net_id, "name": "later", "ttl_secs": 2}),
        )
        .await?;
    let later_id = s(&later["grant"]["id"]);
    let mut replica = replica;
    replica.stop().await?;
    w.node.stop().await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
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

/// Runs the `powernode` binary against the world's API.
fn cli(w: &World, bin: &Path, args: &[&str]) -> anyhow::Result<std::process::Output> {
    Ok(powernode_tests::cli_support::powernode(bin)
        .args(["--url", &format!("http://127.0.0.1:{}", w.node.port)])
        .args(["--token", &w.token])
        .args(args)
        .output()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_makes_the_key_here_and_writes_a_private_file() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let bin = powernode_tests::bins::powernode_bin()?;
    let mut w = world().await?;
    let net_id = s(&w.network["id"]);
    let gw_instance = s(&w.peers[0]["instance_id"]);
    w.register_key(&gw_instance, "10.99.0.2:51820").await?;
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("laptop.conf");
    let out_arg = out.display().to_string();
    let run = cli(
        &w,
        &bin,
        &[
            "networks", "grant", &net_id, "--name", "laptop", "--ttl", "8h", "--out", &out_arg,
        ],
    )?;
    let stdout = String::from_utf8_lossy(&run.stdout).to_string();
    ensure!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    ensure!(
        stdout.contains(&out_arg) && stdout.contains("0600"),
        "{stdout}"
    );
    let mode = std::fs::metadata(&out)?.permissions().mode();
    ensure!(mode & 0o777 == 0o600, "mode {mode:o}");
    let text = std::fs::read_to_string(&out)?;
    let sections = parse_wg_quick(&text)?;
    let private = sections[0]
        .1
        .get("PrivateKey")
        .context("no PrivateKey")?
        .clone();
    ensure!(!text.contains(PLACEHOLDER), "{text}");

    let list = cli(&w, &bin, &["networks", "grants", &net_id, "-o", "json"])?;
    ensure!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let data: Value = serde_json::from_slice(&list.stdout)?;
    let g = &data["grants"][0];
    ensure!(
        g["public_key"] == public_of(&private)?.as_str() && g["status"] == "active",
        "{data}"
    );
    ensure!(g["expires_at"].is_string(), "{data}");
    // Only the public key went to the platform.
    for r in w.records().await? {
        ensure!(
            !r.bytes
                .windows(private.len())
                .any(|x| x == private.as_bytes()),
            "record {} holds the private key",
            r.seq
        );
    }
    // An existing file is never overwritten.
    let again = cli(
        &w,
        &bin,
        &[
            "networks", "grant", &net_id, "--name", "laptop2", "--out", &out_arg,
        ],
    )?;
    ensure!(!again.status.success(), "overwrote {out_arg}");
    ensure!(std::fs::read_to_string(&out)? == text, "the file changed");

    let id = s(&g["id"]);
    let revoke = cli(&w, &bin, &["networks", "revoke-grant", &id])?;
    ensure!(
        revoke.status.success() && String::from_utf8_lossy(&revoke.stdout).contains("revoked"),
        "{}",
        String::from_utf8_lossy(&revoke.stderr)
    );
    let again = cli(&w, &bin, &["networks", "revoke-grant", &id])?;
    ensure!(
        !again.status.success()
            && String::from_utf8_lossy(&again.stderr).contains("already_revoked"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    w.node.stop().await
}
