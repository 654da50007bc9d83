//! The harness: the API alone on a real nats-server (no service reacts,
//! so nothing runs an execution: what the log holds is what the actions
//! appended), an account, and a fleet: a network, a server template and a
//! worker template, and a cluster of 3 servers and 3 workers on k3s
//! v1.30.0 whose first server holds the VIP.
//!
//! What agents and services would report (enrollment, the cluster, its
//! nodes ready, the VIP) is written straight to the log by a test service
//! (agents' own events would have to be signed by their keys).

use anyhow::ensure;
use powernode_events::payloads::fleet::{AgentEnrolled, CniPlugin};
use powernode_events::payloads::k3s::{
    ClusterBootstrapped, HandshakeReady, NodeRegistered, NodeRole,
};
use powernode_events::payloads::sdwan::{VipPurpose, VirtualIpAllocated};
use powernode_events::{AccountId, Actor, Envelope, EventPayload};
use powernode_log::Expect;
use powernode_tests::api_support::Api;
use powernode_tests::http::{action, Answer};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// A member of the cluster.
pub(crate) struct Member {
    pub(crate) instance_id: String,
    pub(crate) hostname: String,
    pub(crate) peer_id: String,
}

/// What a test works with.
pub(crate) struct World {
    pub(crate) api: Api,
    pub(crate) account: String,
    pub(crate) token: String,
    pub(crate) network_id: String,
    pub(crate) server_template: String,
    pub(crate) worker_template: String,
    pub(crate) cluster_id: String,
    pub(crate) vip_id: String,
    pub(crate) servers: Vec<Member>,
    pub(crate) workers: Vec<Member>,
}

impl World {
    pub(crate) async fn call(&self, name: &str, args: Value) -> anyhow::Result<Answer> {
        action(self.api.port, Some(&self.token), name, &args).await
    }

    pub(crate) async fn ok(&self, name: &str, args: Value) -> anyhow::Result<Value> {
        let a = self.call(name, args).await?;
        ensure!(a.status == 200, "{name}: {} {}", a.status, a.body);
        Ok(a.body["data"].clone())
    }

    /// The refusal of `name(args)`: its status and code; fails when it was answered.
    pub(crate) async fn refused(
        &self,
        name: &str,
        args: Value,
    ) -> anyhow::Result<(u16, String, String)> {
        let a = self.call(name, args).await?;
        ensure!(a.status != 200, "{name} was answered: {}", a.body);
        Ok((
            a.status,
            s(&a.body["error"]["code"]),
            s(&a.body["error"]["message"]),
        ))
    }

    pub(crate) async fn last_seq(&self) -> anyhow::Result<u64> {
        Ok(self.api.log.last_seq().await?)
    }

    /// Appends `payload` as `actor` would, and waits until the API applied it.
    pub(crate) async fn report(
        &self,
        actor: Actor,
        payload: impl Into<EventPayload>,
    ) -> anyhow::Result<u64> {
        let e = Envelope::new(AccountId::new(&self.account)?, actor, payload);
        let seq = self.api.log.append(&e, Expect::Any).await?.seq;
        self.applied(seq).await?;
        Ok(seq)
    }

    /// Waits until the API has applied `seq`.
    pub(crate) async fn applied(&self, seq: u64) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let h = action(
                self.api.port,
                Some(&self.api.admin),
                "system_state_hash",
                &json!({}),
            )
            .await?;
            if h.body["data"]["seq"].as_u64().unwrap_or(0) >= seq {
                return Ok(());
            }
            ensure!(Instant::now() < deadline, "the API never applied seq {seq}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// An enrolled instance `hostname` of `template`, attached to the network.
    pub(crate) async fn member(&self, hostname: &str, template: &str) -> anyhow::Result<Member> {
        let node = self
            .ok(
                "system_create_node",
                json!({"hostname": hostname, "node_template_id": template, "memory_mb": 2048}),
            )
            .await?;
        let i = self
            .ok(
                "system_provision_instance",
                json!({"node_id": node["node"]["id"]}),
            )
            .await?;
        let instance_id = s(&i["id"]);
        self.report(
            Actor::service("test-intake"),
            AgentEnrolled {
                instance_id: instance_id.clone(),
                public_key: hex_key(&instance_id),
            },
        )
        .await?;
        let p = self
            .ok(
                "system_sdwan_attach_peer",
                json!({"network_id": self.network_id, "node_instance_id": instance_id}),
            )
            .await?;
        Ok(Member {
            instance_id,
            hostname: hostname.to_string(),
            peer_id: s(&p["peer"]["id"]),
        })
    }

    /// `system_create_module_version` of `module` at `version`.
    pub(crate) async fn version(&self, module: &str, version: &str) -> anyhow::Result<Value> {
        self.ok(
            "system_create_module_version",
            json!({"module_name": module, "version": version, "k3s_version": format!("v{version}+k3s1")}),
        )
        .await
    }

    /// The runbook's `execute_skill` inputs, as written, for the server template.
    pub(crate) fn runbook_inputs(&self) -> Value {
        json!({
            "template_id": self.server_template,
            "module_id": "mod-k3s-server",
            "target_version_id": "v-k3s-1.31.0",
            "batch_pct": 50,
            "max_consecutive_failures": 1
        })
    }
}

pub(crate) fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// A 32-byte key in hex, different per instance.
fn hex_key(seed: &str) -> String {
    let mut out = String::new();
    for i in 0..32u8 {
        let b = seed
            .bytes()
            .fold(i, |a, c| a.wrapping_mul(31).wrapping_add(c));
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The world: catalog versions 1.30.0 and 1.31.0 of both modules, the
/// server template pinned to `v-k3s-1.30.0`, the cluster ready.
pub(crate) async fn world() -> anyhow::Result<World> {
    let api = Api::jetstream().await?;
    let (account, token) = api
        .account_with_token("sre", &["system.kubernetes_provision"])
        .await?;
    let mut w = World {
        api,
        account,
        token,
        network_id: String::new(),
        server_template: String::new(),
        worker_template: String::new(),
        cluster_id: String::new(),
        vip_id: String::new(),
        servers: Vec::new(),
        workers: Vec::new(),
    };
    for v in ["1.30.0", "1.31.0"] {
        w.version("k3s-server", v).await?;
        w.version("k3s-agent", v).await?;
    }
    let net = w
        .ok("system_sdwan_create_network", json!({"name": "prod"}))
        .await?;
    w.network_id = s(&net["network"]["id"]);
    w.server_template = s(&w
        .ok("system_create_template", json!({"name": "k3s-prod-server"}))
        .await?["template"]["id"]);
    w.worker_template = s(&w
        .ok("system_create_template", json!({"name": "k3s-prod-worker"}))
        .await?["template"]["id"]);
    w.ok(
        "system_assign_module_to_template",
        json!({"template_id": w.server_template, "module_name": "k3s-server", "module_version_id": "v-k3s-1.30.0"}),
    )
    .await?;
    w.ok(
        "system_assign_module_to_template",
        json!({"template_id": w.worker_template, "module_name": "k3s-agent", "module_version_id": "v-k3s-agent-1.30.0"}),
    )
    .await?;
    for i in 1..=3 {
        let m = w
            .member(&format!("prod-server-{i}"), &w.server_template.clone())
            .await?;
        w.servers.push(m);
    }
    for i in 1..=3 {
        let m = w
            .member(&format!("prod-worker-{i}"), &w.worker_template.clone())
            .await?;
        w.workers.push(m);
    }
    w.cluster_id = "cluster-prod-1".to_string();
    w.vip_id = "vip-prod-1".to_string();
    let bootstrap = w.servers[0].instance_id.clone();
    let provisioner = Actor::service("provisioner");
    w.report(
        provisioner.clone(),
        ClusterBootstrapped {
            cluster_id: w.cluster_id.clone(),
            name: "prod".into(),
            bootstrap_instance_id: bootstrap.clone(),
            api_endpoint: "https://[fd00:1::100]:6443".into(),
            network_id: Some(w.network_id.clone()),
            cni_plugin: CniPlugin::Flannel,
            pod_cidr: None,
            server_flags: Vec::new(),
            join_token_fingerprint: "sha256:00".into(),
        },
    )
    .await?;
    let members: Vec<(String, String, NodeRole)> = w
        .servers
        .iter()
        .map(|m| {
            (
                m.instance_id.clone(),
                m.hostname.clone(),
                NodeRole::ControlPlane,
            )
        })
        .chain(
            w.workers
                .iter()
                .map(|m| (m.instance_id.clone(), m.hostname.clone(), NodeRole::Worker)),
        )
        .collect();
    for (id, host, role) in members {
        w.report(
            provisioner.clone(),
            NodeRegistered {
                cluster_id: w.cluster_id.clone(),
                instance_id: id.clone(),
                role,
            },
        )
        .await?;
        w.report(
            Actor::service("test-intake"),
            HandshakeReady {
                instance_id: id,
                cluster_id: w.cluster_id.clone(),
                node_name: host,
                k3s_version: "v1.30.0+k3s1".into(),
                token_fingerprint: None,
            },
        )
        .await?;
    }
    let holder = w.servers[0].peer_id.clone();
    w.report(
        Actor::service("sdwan"),
        VirtualIpAllocated {
            virtual_ip_id: w.vip_id.clone(),
            network_id: w.network_id.clone(),
            vip: "fd00:1::100".parse()?,
            purpose: VipPurpose::K3sApiEndpoint,
            cluster_id: w.cluster_id.clone(),
            primary_holder_peer_id: holder,
        },
    )
    .await?;
    Ok(w)
}
