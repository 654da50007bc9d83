//! The harness: a node with the API and the sdwan service on a real
//! nats-server, an account, a network with two peers, and helpers.

use anyhow::{ensure, Context};
use powernode_events::payloads::sdwan::WireguardKeyRegistered;
use powernode_events::wireguard::{decode_base64, encode_base64};
use powernode_events::{AccountId, Actor, Envelope};
use powernode_log::jetstream::JetStreamLog;
use powernode_log::{Expect, Filter, SharedLog};
use powernode_server::node::{start_node_with, NodeExtras, RunningNode};
use powernode_server::services::ServiceName;
use powernode_tests::http::{action, Answer};
use powernode_tests::nats::NatsServer;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The line a config whose key the caller brought has instead of its
/// private key (`powernode_actions::grants::PRIVATE_KEY_PLACEHOLDER`).
pub(crate) const PLACEHOLDER: &str =
    "# PrivateKey = <the private key of this grant's public key; fill it in>";

/// A node running the API and the sdwan service (grant expiry), or only
/// an sdwan replica.
pub(crate) struct Node {
    pub(crate) node: Option<RunningNode>,
    pub(crate) port: u16,
    pub(crate) admin: String,
}

impl Node {
    pub(crate) async fn stop(&mut self) -> anyhow::Result<()> {
        match self.node.take() {
            Some(n) => n.stop().await,
            None => Ok(()),
        }
    }
}

pub(crate) async fn start(
    log: &SharedLog,
    dir: &Path,
    replica: Option<&str>,
) -> anyhow::Result<Node> {
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
pub(crate) struct World {
    pub(crate) log: SharedLog,
    pub(crate) node: Node,
    pub(crate) account: String,
    pub(crate) token: String,
    pub(crate) network: Value,
    /// instance id -> (public key, endpoint)
    pub(crate) keys: BTreeMap<String, (String, String)>,
    pub(crate) peers: Vec<Value>,
    pub(crate) _dir: tempfile::TempDir,
    pub(crate) _nats: NatsServer,
}

impl World {
    pub(crate) async fn call(&self, name: &str, args: Value) -> anyhow::Result<Answer> {
        action(self.node.port, Some(&self.token), name, &args).await
    }

    pub(crate) async fn ok(&self, name: &str, args: Value) -> anyhow::Result<Value> {
        let a = self.call(name, args).await?;
        ensure!(a.status == 200, "{name}: {} {}", a.status, a.body);
        Ok(a.body["data"].clone())
    }

    /// Waits until the API has applied `seq`.
    pub(crate) async fn applied(&self, seq: u64) -> anyhow::Result<()> {
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
    pub(crate) async fn register_key(
        &mut self,
        instance: &str,
        endpoint: &str,
    ) -> anyhow::Result<()> {
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

    /// The fleet state folded from the whole log (what the sdwan service
    /// hands agents as their WireGuard configs).
    pub(crate) async fn fold(&self) -> anyhow::Result<powernode_projections::FleetState> {
        use powernode_projections::Projection;
        let mut state = powernode_projections::FleetState::default();
        for r in self.records().await? {
            state.apply(r.seq, &Envelope::decode(&r.bytes)?);
        }
        Ok(state)
    }

    /// The desired WireGuard config of peer `i` of the world.
    pub(crate) async fn peer_config(
        &self,
        i: usize,
    ) -> anyhow::Result<powernode_events::wireguard::WireguardConfig> {
        let peer = self.peers[i]["id"].as_str().unwrap_or_default();
        self.fold()
            .await?
            .wireguard_config(&AccountId::new(&self.account)?, peer)
            .ok_or_else(|| anyhow::anyhow!("peer {peer} has no WireGuard config"))
    }

    pub(crate) async fn last_seq(&self) -> anyhow::Result<u64> {
        Ok(self.log.last_seq().await?)
    }

    /// Every record of the log, as raw bytes and kind.
    pub(crate) async fn records(&self) -> anyhow::Result<Vec<powernode_log::Record>> {
        Ok(self.log.read(1, 100_000, &Filter::all()).await?)
    }
}

pub(crate) async fn world() -> anyhow::Result<World> {
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

pub(crate) fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// A wg-quick file as sections of `key = value` (comments dropped).
pub(crate) fn parse_wg_quick(
    text: &str,
) -> anyhow::Result<Vec<(String, BTreeMap<String, String>)>> {
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

pub(crate) fn public_of(private: &str) -> anyhow::Result<String> {
    let bytes: [u8; 32] = decode_base64(private)
        .context("the private key is not base64")?
        .try_into()
        .map_err(|_| anyhow::anyhow!("the private key is not 32 bytes"))?;
    let public = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(bytes));
    Ok(encode_base64(public.as_bytes()))
}
