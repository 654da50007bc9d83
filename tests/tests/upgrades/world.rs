//! The harness: a real nats-server, every powernode service in this
//! process (stopped and started again on its checkpoints for the restart
//! scenario), an operator of a fresh account, an SD-WAN network, the
//! module catalog (1.30.5 and 1.31.0 of both modules), and real
//! `powernode-agent --runtime simulated` processes; servers serve the
//! simulated k3s API on a loopback port of their own.

use anyhow::{anyhow, ensure, Context as _};
use powernode_events::{Envelope, EventPayload};
use powernode_log::jetstream::JetStreamLog;
use powernode_log::{Filter, SharedLog};
use powernode_server::node::{start_node_with, NodeExtras, RunningNode};
use powernode_server::services::skills::SkillsConfig;
use powernode_server::services::ServiceName;
use powernode_tests::lifecycle_support::{
    call, str_at, wait_until, AgentProcess, Operator, HEARTBEAT_MS, OPERATOR_PERMISSIONS,
};
use powernode_tests::nats::NatsServer;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// How long a wait may take (a whole rolling upgrade included).
pub const WAIT: Duration = Duration::from_secs(40);
/// How long a simulated node upgrade takes (five phases).
pub const UPGRADE_MS: u64 = 800;
/// The server module's versions.
pub const SERVER_FROM: &str = "v-k3s-1.30.5";
/// The server module's versions.
pub const SERVER_TO: &str = "v-k3s-1.31.0";
/// The agent module's versions.
pub const AGENT_FROM: &str = "v-k3s-agent-1.30.5";
/// The agent module's versions.
pub const AGENT_TO: &str = "v-k3s-agent-1.31.0";

/// One instance and its running agent.
pub struct Node {
    /// Its hostname (= Kubernetes node name).
    pub host: String,
    /// Instance id.
    pub instance_id: String,
    /// Its peer on the world's network.
    pub peer_id: String,
    /// Where its simulated k3s API listens (servers).
    pub api_port: Option<u16>,
    /// The agent process.
    pub agent: AgentProcess,
}

/// A cluster made as the runbook makes one.
pub struct Cluster {
    /// Cluster id.
    pub id: String,
    /// Its template of servers (`servers[0]` bootstrapped).
    pub server_template: String,
    /// Its template of workers.
    pub worker_template: String,
    /// The servers, the bootstrap server (VIP holder) first.
    pub servers: Vec<Node>,
    /// The workers.
    pub workers: Vec<Node>,
}

impl Cluster {
    /// Every node, servers first.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.servers.iter().chain(self.workers.iter())
    }

    /// The node whose peer is `peer_id`.
    pub fn node_of_peer(&self, peer_id: &str) -> Option<&Node> {
        self.nodes().find(|n| n.peer_id == peer_id)
    }
}

/// What one agent is started with, besides the basics.
#[derive(Debug, Clone, Default)]
pub struct AgentFlags {
    /// `--fail-upgrade-to <version id>`.
    pub fail_upgrade_to: Option<String>,
    /// `--node-upgrade-ms` (default [`UPGRADE_MS`]).
    pub upgrade_ms: Option<u64>,
}

/// A platform, its operator and network.
pub struct World {
    /// The operator of the world's account.
    pub op: Operator,
    /// The event log.
    pub log: SharedLog,
    /// The SD-WAN network every node is attached to.
    pub net: String,
    node: Option<RunningNode>,
    nats: NatsServer,
    dir: tempfile::TempDir,
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(n) = &self.node {
            n.shutdown.cancel();
        }
    }
}

impl World {
    /// The platform, an operator, a network and the catalog.
    pub async fn start() -> anyhow::Result<Self> {
        let nats = NatsServer::start()?;
        let log: SharedLog =
            Arc::new(JetStreamLog::connect(powernode_tests::nats::log_config(nats.url())).await?);
        let dir = tempfile::Builder::new().prefix("pn-upgrades-").tempdir()?;
        let mut w = Self {
            op: Operator {
                port: 0,
                token: String::new(),
                account_id: String::new(),
            },
            log,
            net: String::new(),
            node: None,
            nats,
            dir,
        };
        let admin = w.start_services().await?;
        let a = call(
            w.op.port,
            &admin,
            "system_create_account",
            &json!({ "name": "sre" }),
        )
        .await
        .map_err(|e| anyhow!("system_create_account: {e}"))?;
        w.op.account_id = str_at(&a, "/account/id")?;
        let t = call(
            w.op.port,
            &admin,
            "system_create_operator_token",
            &json!({ "account_id": w.op.account_id, "permissions": OPERATOR_PERMISSIONS }),
        )
        .await
        .map_err(|e| anyhow!("system_create_operator_token: {e}"))?;
        w.op.token = str_at(&t, "/token")?;
        for v in ["1.30.5", "1.31.0"] {
            for module in ["k3s-server", "k3s-agent"] {
                w.op.ok(
                    "system_create_module_version",
                    json!({"module_name": module, "version": v, "k3s_version": format!("v{v}+k3s1")}),
                )
                .await?;
            }
        }
        w.net = w.op.network("k3s-net", None).await?;
        Ok(w)
    }

    /// Starts every service (on its checkpoints, when they ran before);
    /// the admin token. The operator's port follows the new API.
    async fn start_services(&mut self) -> anyhow::Result<String> {
        let node = start_node_with(
            self.log.clone(),
            &self.dir.path().join("platform"),
            &ServiceName::ALL,
            "127.0.0.1:0".parse()?,
            "it",
            NodeExtras {
                skills: SkillsConfig {
                    tick_ms: 200,
                    ..SkillsConfig::default()
                },
                ..NodeExtras::default()
            },
        )
        .await?;
        self.op.port = node.api_addr.context("the API runs here")?.port();
        let admin =
            std::fs::read_to_string(node.admin_token_file.as_ref().context("admin token file")?)?
                .trim()
                .to_string();
        self.node = Some(node);
        Ok(admin)
    }

    /// Stops every service (they checkpoint on the way out).
    pub async fn stop_services(&mut self) -> anyhow::Result<()> {
        match self.node.take() {
            Some(n) => n.stop().await,
            None => Ok(()),
        }
    }

    /// Starts the services again after [`stop_services`](Self::stop_services).
    pub async fn restart_services(&mut self) -> anyhow::Result<()> {
        self.start_services().await.map(drop)
    }

    /// A template named `name`; its id.
    pub async fn template(&self, name: &str) -> anyhow::Result<String> {
        self.op.template(name).await
    }

    /// Assigns `module` to `template`, pinned to `version`, targeting
    /// `cluster` when given.
    pub async fn assign(
        &self,
        template: &str,
        module: &str,
        version: &str,
        cluster: Option<&str>,
    ) -> anyhow::Result<()> {
        let mut args =
            json!({"template_id": template, "module_name": module, "module_version_id": version});
        if let Some(c) = cluster {
            args["config"] = json!({ "target_cluster_id": c });
        }
        self.op.ok("system_assign_module_to_template", args).await?;
        Ok(())
    }

    /// A node `host` on `template`, an instance on it attached to the
    /// network, and its agent running (a server serves its API).
    pub async fn node(
        &self,
        host: &str,
        template: &str,
        server: bool,
        flags: &AgentFlags,
    ) -> anyhow::Result<Node> {
        let mut n = self.idle_node(host, template, server, flags).await?;
        let peer = self.op.attach(&self.net, &n.instance_id).await?;
        n.peer_id = str_at(&peer, "/id")?;
        Ok(n)
    }

    /// [`node`](Self::node) without attaching it to the network (no peer).
    pub async fn idle_node(
        &self,
        host: &str,
        template: &str,
        server: bool,
        flags: &AgentFlags,
    ) -> anyhow::Result<Node> {
        let (instance_id, credential) = self.op.provision(host, template, 2048).await?;
        let peer_id = String::new();
        let api_port = if server { Some(free_port()?) } else { None };
        let mut args = vec![
            "--node-upgrade-ms".to_string(),
            flags.upgrade_ms.unwrap_or(UPGRADE_MS).to_string(),
        ];
        if let Some(port) = api_port {
            args.extend(["--k3s-api-listen".into(), format!("127.0.0.1:{port}")]);
        }
        if let Some(v) = &flags.fail_upgrade_to {
            args.extend(["--fail-upgrade-to".into(), v.clone()]);
        }
        let agent = AgentProcess::spawn_with_args(
            &self.nats.url(),
            Some(&credential),
            &self.dir.path().join("agents").join(host),
            Some(HEARTBEAT_MS),
            &args,
        )?;
        Ok(Node {
            host: host.to_string(),
            instance_id,
            peer_id,
            api_port,
            agent,
        })
    }

    /// The runbook's cluster `name`: a server template assigned
    /// `k3s-server` (pinned to 1.30.5) whose first instance bootstraps;
    /// then the template targets the cluster and `servers - 1` more join;
    /// a worker template assigned `k3s-agent` (pinned, targeting the
    /// cluster) with `workers` workers (`fail(i)`: worker `i`'s flags).
    /// Returns once every node is ready and the bootstrap server holds the
    /// VIP with the other servers as failover candidates.
    pub async fn cluster(
        &self,
        name: &str,
        servers: usize,
        workers: usize,
        worker_flags: impl Fn(usize) -> AgentFlags,
    ) -> anyhow::Result<Cluster> {
        let server_template = self.template(&format!("{name}-server")).await?;
        let worker_template = self.template(&format!("{name}-worker")).await?;
        self.assign(&server_template, "k3s-server", SERVER_FROM, None)
            .await?;
        let first = self
            .node(
                &format!("{name}-server-1"),
                &server_template,
                true,
                &AgentFlags::default(),
            )
            .await?;
        let c = self
            .op
            .wait_cluster_active(&first.instance_id)
            .await
            .with_context(|| format!("agent log:\n{}", first.agent.log_tail(30)))?;
        let id = str_at(&c, "/id")?;
        self.assign(&server_template, "k3s-server", SERVER_FROM, Some(&id))
            .await?;
        self.assign(&worker_template, "k3s-agent", AGENT_FROM, Some(&id))
            .await?;
        let mut s = vec![first];
        for i in 2..=servers {
            let host = format!("{name}-server-{i}");
            s.push(
                self.node(&host, &server_template, true, &AgentFlags::default())
                    .await?,
            );
        }
        let mut w = Vec::new();
        for i in 1..=workers {
            let host = format!("{name}-worker-{i}");
            w.push(
                self.node(&host, &worker_template, false, &worker_flags(i))
                    .await?,
            );
        }
        let cluster = Cluster {
            id,
            server_template,
            worker_template,
            servers: s,
            workers: w,
        };
        for n in cluster.nodes() {
            self.wait_ready_node(&cluster.id, n).await?;
        }
        let holder = cluster.servers[0].peer_id.clone();
        let others: Vec<String> = cluster.servers[1..]
            .iter()
            .map(|s| s.peer_id.clone())
            .collect();
        wait_until(
            WAIT,
            "the bootstrap server holding the VIP, the others candidates",
            || async {
                let v = self.vip(&cluster.id).await.map_err(|e| format!("{e:#}"))?;
                let mut candidates: Vec<String> = v["failover_holder_peer_ids"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p.as_str().map(str::to_string))
                    .collect();
                candidates.sort();
                let mut want = others.clone();
                want.sort();
                if v["holder_peer_id"] == holder.as_str() && candidates == want {
                    Ok(())
                } else {
                    Err(v.to_string())
                }
            },
        )
        .await?;
        Ok(cluster)
    }

    /// Waits until `n` is a ready node of `cluster_id`.
    pub async fn wait_ready_node(&self, cluster_id: &str, n: &Node) -> anyhow::Result<()> {
        self.op
            .wait_node_ready(cluster_id, &n.instance_id)
            .await
            .with_context(|| format!("agent log of {}:\n{}", n.host, n.agent.log_tail(30)))?;
        Ok(())
    }

    /// The cluster's VIP as `system_sdwan_get_virtual_ip` shows it.
    pub async fn vip(&self, cluster_id: &str) -> anyhow::Result<Value> {
        Ok(self
            .op
            .ok(
                "system_sdwan_get_virtual_ip",
                json!({ "cluster_id": cluster_id }),
            )
            .await?["virtual_ip"]
            .clone())
    }

    /// The runbook's `execute_skill` of `system-rolling-module-upgrade`.
    pub fn upgrade_inputs(
        template: &str,
        module_id: &str,
        to: &str,
        batch_pct: u32,
        max_failures: u32,
    ) -> Value {
        json!({
            "skill": "system-rolling-module-upgrade",
            "inputs": {
                "template_id": template,
                "module_id": module_id,
                "target_version_id": to,
                "batch_pct": batch_pct,
                "max_consecutive_failures": max_failures
            }
        })
    }

    /// `execute_skill(args)`: the execution.
    pub async fn execute(&self, args: Value) -> anyhow::Result<Value> {
        Ok(self.op.ok("execute_skill", args).await?["execution"].clone())
    }

    /// `execute_skill(args)` as a dry run: the plan.
    pub async fn dry_run(&self, mut args: Value) -> anyhow::Result<Value> {
        args["dry_run"] = json!(true);
        self.execute(args).await
    }

    /// `system_get_skill_execution`.
    pub async fn execution(&self, id: &str) -> anyhow::Result<Value> {
        Ok(self
            .op
            .ok("system_get_skill_execution", json!({ "execution_id": id }))
            .await?["execution"]
            .clone())
    }

    /// Waits until execution `id` is `completed` or `aborted`; it.
    pub async fn wait_finished(&self, id: &str) -> anyhow::Result<Value> {
        wait_until(WAIT, &format!("execution {id} finished"), || async {
            let e = self.execution(id).await.map_err(|e| format!("{e:#}"))?;
            if e["status"] == "completed" || e["status"] == "aborted" {
                Ok(e)
            } else {
                Err(e.to_string())
            }
        })
        .await
    }

    /// Every event of the world's account whose kind starts with
    /// `prefix`, with its sequence, in log order.
    pub async fn events(&self, prefix: &str) -> anyhow::Result<Vec<(u64, Envelope)>> {
        let filter = Filter {
            account: Some(powernode_events::AccountId::new(
                self.op.account_id.clone(),
            )?),
            kind_prefix: Some(prefix.into()),
        };
        let mut out = Vec::new();
        let mut from = 1;
        loop {
            let page = self.log.read(from, 1000, &filter).await?;
            let Some(last) = page.last().map(|r| r.seq) else {
                break;
            };
            for r in &page {
                out.push((r.seq, Envelope::decode(&r.bytes)?));
            }
            from = last + 1;
        }
        Ok(out)
    }

    /// `(seq, step)` of every `step_started` of execution `id`, in log order.
    pub async fn started(&self, id: &str) -> anyhow::Result<Vec<(u64, u32)>> {
        Ok(self
            .events("system.skill.execution.step_started")
            .await?
            .into_iter()
            .filter_map(|(seq, e)| match e.payload {
                EventPayload::SkillStepStarted(p) if p.execution_id == id => Some((seq, p.step)),
                _ => None,
            })
            .collect())
    }

    /// The instances of `system_list_modules` for `module` (`k3s-server`):
    /// instance id → module version id.
    pub async fn module_versions(
        &self,
        module: &str,
    ) -> anyhow::Result<std::collections::BTreeMap<String, Option<String>>> {
        let m = self.op.ok("system_list_modules", json!({})).await?;
        let module = m["modules"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|x| x["name"] == module)
            .with_context(|| format!("no module {module} in {m}"))?;
        Ok(module["instances"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| {
                (
                    i["instance_id"].as_str().unwrap_or_default().to_string(),
                    i["module_version_id"].as_str().map(str::to_string),
                )
            })
            .collect())
    }

    /// `agent_introspect` of a node agent: its `node`.
    pub async fn introspect(&self, instance_id: &str) -> anyhow::Result<Value> {
        let a = self
            .op
            .ok("agent_introspect", json!({ "agent_id": instance_id }))
            .await?;
        ensure!(a["kind"] == "node", "{a}");
        Ok(a["node"].clone())
    }

    /// Waits until `n`'s agent reports running `version` of `module` and
    /// no upgrade under way (its report, as `agent_introspect` shows it);
    /// its introspection.
    pub async fn wait_reported(
        &self,
        n: &Node,
        module: &str,
        version: &str,
    ) -> anyhow::Result<Value> {
        wait_until(
            WAIT,
            &format!("{} reporting {module} {version}", n.host),
            || async {
                let node = self
                    .introspect(&n.instance_id)
                    .await
                    .map_err(|e| format!("{e:#}"))?;
                let reported = node["modules"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|m| m["module_name"] == module && m["reported_version_id"] == version);
                if reported && node["upgrading"].is_null() {
                    Ok(node)
                } else {
                    Err(node.to_string())
                }
            },
        )
        .await
    }
}

/// A free loopback TCP port (bound and released).
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}
