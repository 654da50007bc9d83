//! A whole platform for the K3s lifecycle tests: a real `nats-server`, the
//! JetStream log, every service in-process (the API also answers the agent
//! intake on `pn.agent.*`), an operator of a fresh account, and real
//! `powernode-agent` processes with the simulated runtime.
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! use powernode_tests::lifecycle_support::*;
//! let p = Platform::start().await?;
//! let net = p.network("k3s-net", None).await?;
//! let server = p.start_member(&p.op, "k3s-server-1", SERVER, None, Some(&net), 2048).await?;
//! let cluster = p.wait_cluster_active(&server.instance_id).await?;
//! # Ok(()) }
//! ```
//!
//! Every wait polls with a deadline ([`WAIT`]) and, on timeout, says what
//! was expected and what was last seen.

mod agent_process;
mod manual_agent;

use crate::nats::NatsServer;
pub use agent_process::*;
use anyhow::{anyhow, bail, Context as _};
pub use manual_agent::*;
use powernode_events::Envelope;
use powernode_log::jetstream::JetStreamLog;
use powernode_log::{Filter, Record, SharedLog};
use powernode_server::node::{start_node_with, NodeExtras, RunningNode};
use powernode_server::services::ServiceName;
use serde_json::{json, Value};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Agents' heartbeat / reconcile interval.
pub const HEARTBEAT_MS: u64 = 250;
/// How long a wait polls before it fails.
pub const WAIT: Duration = Duration::from_secs(20);
/// How often a wait polls.
const POLL: Duration = Duration::from_millis(100);
/// The k3s version the simulated runtime reports.
pub const K3S_VERSION: &str = "v1.30.5+k3s1";
/// Module names.
pub const SERVER: &str = "k3s-server";
/// Module names.
pub const AGENT: &str = "k3s-agent";
/// What a lifecycle operator may do.
pub const OPERATOR_PERMISSIONS: &[&str] = &[
    "system.kubernetes_provision",
    "system.kubernetes_decommission",
    "system.kubernetes_kubeconfig",
];

/// An action the API refused (its `refusal()`: status, code, message), or
/// could not be asked (`status()` `None`, `code()` `transport`,
/// `timeout`, …); the client's error type.
pub use powernode_client::ActionError;

/// Polls `check` every 100 ms until it answers `Ok`, or fails after
/// `timeout` with `expected` and the last `Err` (what was seen instead).
pub async fn wait_until<T, F, Fut>(
    timeout: Duration,
    expected: &str,
    mut check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        let seen = match check().await {
            Ok(t) => return Ok(t),
            Err(seen) => seen,
        };
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {expected}; last seen: {seen}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// An operator of one account (its token carries [`OPERATOR_PERMISSIONS`]).
#[derive(Debug, Clone)]
pub struct Operator {
    /// The API port.
    pub port: u16,
    /// Bearer token.
    pub token: String,
    /// The account.
    pub account_id: String,
}

impl Operator {
    /// `POST /v1/actions/<name>`: `data` on 200, the error otherwise.
    pub async fn action(&self, name: &str, args: Value) -> Result<Value, ActionError> {
        call(self.port, &self.token, name, &args).await
    }

    /// An action that must succeed.
    pub async fn ok(&self, name: &str, args: Value) -> anyhow::Result<Value> {
        self.action(name, args.clone())
            .await
            .map_err(|e| anyhow!("{name}({args}) failed: {e}"))
    }

    /// A new template; its id.
    pub async fn template(&self, name: &str) -> anyhow::Result<String> {
        let t = self
            .ok("system_create_template", json!({ "name": name }))
            .await?;
        str_at(&t, "/template/id")
    }

    /// Assigns `module` (`k3s-server` / `k3s-agent`) to the template, with
    /// `target_cluster_id` when given.
    pub async fn assign(
        &self,
        template_id: &str,
        module: &str,
        target: Option<&str>,
    ) -> anyhow::Result<Value> {
        let mut args = json!({ "template_id": template_id, "module_name": module });
        if let Some(t) = target {
            args["config"] = json!({ "target_cluster_id": t });
        }
        self.ok("system_assign_module_to_template", args).await
    }

    /// A node of `memory_mb` MiB on the template and an instance on it:
    /// `(instance_id, enrollment credential)`.
    pub async fn provision(
        &self,
        hostname: &str,
        template_id: &str,
        memory_mb: u64,
    ) -> anyhow::Result<(String, String)> {
        self.provision_with(hostname, template_id, memory_mb, None)
            .await?
            .map_err(|e| anyhow!("system_provision_instance({hostname}) failed: {e}"))
    }

    /// [`provision`](Self::provision) with an explicit `cni_plugin`; the
    /// inner error is the provision refusal (the node was created).
    pub async fn provision_with(
        &self,
        hostname: &str,
        template_id: &str,
        memory_mb: u64,
        cni_plugin: Option<&str>,
    ) -> anyhow::Result<Result<(String, String), ActionError>> {
        let node = self
            .ok(
                "system_create_node",
                json!({ "hostname": hostname, "node_template_id": template_id, "memory_mb": memory_mb }),
            )
            .await?;
        let node_id = str_at(&node, "/node/id")?;
        let mut args = json!({ "node_id": node_id });
        if let Some(cni) = cni_plugin {
            args["cni_plugin"] = json!(cni);
        }
        Ok(match self.action("system_provision_instance", args).await {
            Ok(i) => Ok((str_at(&i, "/id")?, str_at(&i, "/enrollment_credential")?)),
            Err(e) => Err(e),
        })
    }

    /// A new SD-WAN network (with `pod_subnet_prefix` when given); its id.
    pub async fn network(
        &self,
        name: &str,
        pod_subnet_prefix: Option<&str>,
    ) -> anyhow::Result<String> {
        let mut args = json!({ "name": name });
        if let Some(p) = pod_subnet_prefix {
            args["pod_subnet_prefix"] = json!(p);
        }
        let n = self.ok("system_sdwan_create_network", args).await?;
        str_at(&n, "/network/id")
    }

    /// The network as `system_sdwan_list_networks` shows it.
    pub async fn network_json(&self, network_id: &str) -> anyhow::Result<Value> {
        let all = self.ok("system_sdwan_list_networks", json!({})).await?;
        all["networks"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["id"] == network_id)
            .cloned()
            .with_context(|| format!("no network {network_id} in {all}"))
    }

    /// Attaches the instance to the network; the peer.
    pub async fn attach(&self, network_id: &str, instance_id: &str) -> anyhow::Result<Value> {
        let p = self
            .ok(
                "system_sdwan_attach_peer",
                json!({ "network_id": network_id, "node_instance_id": instance_id }),
            )
            .await?;
        Ok(p["peer"].clone())
    }

    /// `kubernetes_list_clusters`.
    pub async fn clusters(&self, include_decommissioned: bool) -> anyhow::Result<Vec<Value>> {
        let c = self
            .ok(
                "kubernetes_list_clusters",
                json!({ "include_decommissioned": include_decommissioned }),
            )
            .await?;
        Ok(c["clusters"].as_array().cloned().unwrap_or_default())
    }

    /// `kubernetes_get_cluster`.
    pub async fn cluster(&self, id: &str) -> anyhow::Result<Value> {
        Ok(self
            .ok("kubernetes_get_cluster", json!({ "id": id }))
            .await?["cluster"]
            .clone())
    }

    /// `kubernetes_list_nodes`.
    pub async fn nodes(&self, cluster_id: &str) -> anyhow::Result<Vec<Value>> {
        let n = self
            .ok("kubernetes_list_nodes", json!({ "cluster_id": cluster_id }))
            .await?;
        Ok(n["nodes"].as_array().cloned().unwrap_or_default())
    }

    /// One instance as `system_list_instances` shows it.
    pub async fn instance(&self, id: &str) -> anyhow::Result<Value> {
        let all = self.ok("system_list_instances", json!({})).await?;
        all["instances"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["id"] == id)
            .cloned()
            .with_context(|| format!("no instance {id}"))
    }

    /// The account's newest 1000 events whose kind starts with `kind_prefix`
    /// (`recent_events`), oldest first.
    pub async fn events(&self, kind_prefix: &str) -> anyhow::Result<Vec<Value>> {
        let e = self
            .ok(
                "recent_events",
                json!({ "kind_prefix": kind_prefix, "limit": 1000 }),
            )
            .await?;
        Ok(e["events"].as_array().cloned().unwrap_or_default())
    }

    /// Those of [`events`](Self::events) whose payload's `instance_id` is `instance`.
    pub async fn instance_events(
        &self,
        kind_prefix: &str,
        instance: &str,
    ) -> anyhow::Result<Vec<Value>> {
        Ok(self
            .events(kind_prefix)
            .await?
            .into_iter()
            .filter(|e| e["payload"]["instance_id"] == instance)
            .collect())
    }

    /// Waits until the cluster bootstrapped by `instance_id` is `active`.
    pub async fn wait_cluster_active(&self, instance_id: &str) -> anyhow::Result<Value> {
        wait_until(
            WAIT,
            &format!("an active cluster bootstrapped by {instance_id}"),
            || async move {
                let all = self.clusters(false).await.map_err(|e| e.to_string())?;
                let mine = all
                    .iter()
                    .find(|c| c["bootstrap_instance_id"] == instance_id);
                match mine {
                    Some(c) if c["status"] == "active" => Ok(c.clone()),
                    Some(c) => Err(format!("cluster {} is {}", c["id"], c["status"])),
                    None => {
                        let i = self.instance(instance_id).await.map_err(|e| e.to_string())?;
                        Err(format!(
                            "no cluster yet; instance phase {}, status {}, last bootstrap rejection {}",
                            i["k3s_phase"], i["status"], i["last_bootstrap_rejection"]
                        ))
                    }
                }
            },
        )
        .await
    }

    /// Waits until `instance_id` is a `ready` node of the cluster; its row.
    pub async fn wait_node_ready(
        &self,
        cluster_id: &str,
        instance_id: &str,
    ) -> anyhow::Result<Value> {
        wait_until(
            WAIT,
            &format!("instance {instance_id} ready in cluster {cluster_id}"),
            || async move {
                let nodes = self.nodes(cluster_id).await.map_err(|e| e.to_string())?;
                match nodes.iter().find(|n| n["instance_id"] == instance_id) {
                    Some(n) if n["status"] == "ready" => Ok(n.clone()),
                    _ => {
                        let i = self
                            .instance(instance_id)
                            .await
                            .map_err(|e| e.to_string())?;
                        Err(format!(
                            "nodes {}; instance phase {}, cluster {}, last join rejection {}",
                            Value::Array(nodes),
                            i["k3s_phase"],
                            i["cluster_id"],
                            i["last_join_rejection"]
                        ))
                    }
                }
            },
        )
        .await
    }

    /// Waits until at least `n` events with kind `kind` are about `instance`;
    /// those events.
    pub async fn wait_instance_events(
        &self,
        kind: &str,
        instance: &str,
        n: usize,
    ) -> anyhow::Result<Vec<Value>> {
        wait_until(
            WAIT,
            &format!("{n} {kind} event(s) of instance {instance}"),
            || async move {
                let found: Vec<Value> = self
                    .instance_events(kind, instance)
                    .await
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .filter(|e| e["kind"] == kind)
                    .collect();
                if found.len() >= n {
                    Ok(found)
                } else {
                    let i = self.instance(instance).await.map_err(|e| e.to_string())?;
                    Err(format!(
                        "{} of them; instance phase {}, last join rejection {}",
                        found.len(),
                        i["k3s_phase"],
                        i["last_join_rejection"]
                    ))
                }
            },
        )
        .await
    }
}

/// Calls an action on the API at `port` with `token`.
pub async fn call(port: u16, token: &str, name: &str, args: &Value) -> Result<Value, ActionError> {
    powernode_client::Api::new(&format!("127.0.0.1:{port}"), token)?
        .call(name, args)
        .await
}

/// The string at a JSON pointer.
pub fn str_at(v: &Value, pointer: &str) -> anyhow::Result<String> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_string)
        .with_context(|| format!("no string at {pointer} in {v}"))
}

/// One instance with its agent running.
pub struct Member {
    /// Instance id.
    pub instance_id: String,
    /// Its template (one per member).
    pub template_id: String,
    /// The enrollment credential.
    pub credential: String,
    /// The agent's state dir.
    pub state_dir: PathBuf,
    /// The running agent.
    pub agent: AgentProcess,
}

/// The platform.
pub struct Platform {
    /// An operator of a fresh account (the default for every helper).
    pub op: Operator,
    /// The event log.
    pub log: SharedLog,
    /// The API port.
    pub port: u16,
    /// The admin token.
    pub admin: String,
    /// Heartbeat interval of the agents started from now on (milliseconds;
    /// `None`: the agent binary's default).
    pub agent_heartbeat_ms: Option<u64>,
    node: Option<RunningNode>,
    nats: NatsServer,
    dir: tempfile::TempDir,
}

impl std::ops::Deref for Platform {
    type Target = Operator;

    fn deref(&self) -> &Operator {
        &self.op
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        if let Some(node) = &self.node {
            node.shutdown.cancel();
        }
    }
}

impl Platform {
    /// nats-server, JetStream log, every service, an operator.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(NodeExtras::default()).await
    }

    /// [`start`](Self::start) with the node's optional parts (e.g. a
    /// failover configuration).
    pub async fn start_with(extras: NodeExtras) -> anyhow::Result<Self> {
        let nats = NatsServer::start()?;
        let log: SharedLog =
            Arc::new(JetStreamLog::connect(crate::nats::log_config(nats.url())).await?);
        let dir = tempfile::Builder::new().prefix("pn-lifecycle-").tempdir()?;
        let node = start_node_with(
            log.clone(),
            dir.path(),
            &ServiceName::ALL,
            "127.0.0.1:0".parse()?,
            "it",
            extras,
        )
        .await?;
        let port = node.api_addr.context("the API runs here")?.port();
        let admin =
            std::fs::read_to_string(node.admin_token_file.as_ref().context("admin token file")?)?
                .trim()
                .to_string();
        let mut p = Self {
            op: Operator {
                port,
                token: String::new(),
                account_id: String::new(),
            },
            log,
            port,
            admin,
            agent_heartbeat_ms: Some(HEARTBEAT_MS),
            node: Some(node),
            nats,
            dir,
        };
        p.op = p.operator("lifecycle").await?;
        Ok(p)
    }

    /// The nats-server URL (agents connect here).
    pub fn nats_url(&self) -> String {
        self.nats.url()
    }

    /// A fresh account and an operator token for it.
    pub async fn operator(&self, name: &str) -> anyhow::Result<Operator> {
        self.operator_with(name, OPERATOR_PERMISSIONS).await
    }

    /// A fresh account and an operator token for it with `permissions`.
    pub async fn operator_with(
        &self,
        name: &str,
        permissions: &[&str],
    ) -> anyhow::Result<Operator> {
        let a = call(
            self.port,
            &self.admin,
            "system_create_account",
            &json!({ "name": name }),
        )
        .await
        .map_err(|e| anyhow!("system_create_account: {e}"))?;
        let account_id = str_at(&a, "/account/id")?;
        let t = call(
            self.port,
            &self.admin,
            "system_create_operator_token",
            &json!({ "account_id": account_id, "permissions": permissions }),
        )
        .await
        .map_err(|e| anyhow!("system_create_operator_token: {e}"))?;
        Ok(Operator {
            port: self.port,
            token: str_at(&t, "/token")?,
            account_id,
        })
    }

    /// A state dir for an agent called `name` (not created).
    pub fn state_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join("agents").join(name)
    }

    /// A path `name` in the platform's temporary dir (not created), e.g.
    /// the data dir of another process.
    pub fn scratch_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs a real `powernode-agent --runtime simulated` enrolling with
    /// `credential`, keeping its identity and state in `state_dir`, its log
    /// in `<state_dir>.log` (appended across restarts).
    pub fn spawn_agent(&self, credential: &str, state_dir: &Path) -> anyhow::Result<AgentProcess> {
        AgentProcess::spawn_with(
            &self.nats_url(),
            Some(credential),
            state_dir,
            self.agent_heartbeat_ms,
        )
    }

    /// A template assigning `module` (with `target`), a node of
    /// `memory_mb` MiB and an instance on it, attached to `network` when
    /// given, and its agent running. Does not wait for anything.
    pub async fn start_member(
        &self,
        op: &Operator,
        hostname: &str,
        module: &str,
        target: Option<&str>,
        network: Option<&str>,
        memory_mb: u64,
    ) -> anyhow::Result<Member> {
        let template_id = op.template(&format!("{hostname}-template")).await?;
        let (instance_id, credential) = op.provision(hostname, &template_id, memory_mb).await?;
        if let Some(n) = network {
            op.attach(n, &instance_id).await?;
        }
        op.assign(&template_id, module, target).await?;
        let state_dir = self.state_dir(hostname);
        let agent = self.spawn_agent(&credential, &state_dir)?;
        Ok(Member {
            instance_id,
            template_id,
            credential,
            state_dir,
            agent,
        })
    }

    /// A bootstrap server on `network` (2048 MiB) and its active cluster.
    pub async fn bootstrap(
        &self,
        op: &Operator,
        hostname: &str,
        network: Option<&str>,
    ) -> anyhow::Result<(Member, Value)> {
        let m = self
            .start_member(op, hostname, SERVER, None, network, 2048)
            .await?;
        let cluster = op
            .wait_cluster_active(&m.instance_id)
            .await
            .with_context(|| format!("agent log of {hostname}:\n{}", m.agent.log_tail(30)))?;
        Ok((m, cluster))
    }

    /// Every record in the log, every account.
    pub async fn raw_log(&self) -> anyhow::Result<Vec<Record>> {
        let mut out = Vec::new();
        let last = self.log.last_seq().await?;
        let mut next = 1;
        while next <= last {
            let page = self.log.read(next, 1000, &Filter::all()).await?;
            let Some(tail) = page.last() else { break };
            next = tail.seq + 1;
            out.extend(page);
        }
        Ok(out)
    }

    /// Every event in the log (every account) whose kind starts with
    /// `kind_prefix`, with its sequence.
    pub async fn log_events(&self, kind_prefix: &str) -> anyhow::Result<Vec<(u64, Envelope)>> {
        let mut out = Vec::new();
        for r in self.raw_log().await? {
            if !r.kind().starts_with(kind_prefix) {
                continue;
            }
            let e = Envelope::decode(&r.bytes)
                .with_context(|| format!("record {} does not decode", r.seq))?;
            out.push((r.seq, e));
        }
        Ok(out)
    }

    /// The log's last sequence.
    pub async fn last_seq(&self) -> anyhow::Result<u64> {
        Ok(self.log.last_seq().await?)
    }

    /// Waits until the log has not grown for 600 ms (reactors done with
    /// what they were reacting to); the last sequence.
    pub async fn settle(&self) -> anyhow::Result<u64> {
        let quiet = Duration::from_millis(600);
        let start = Instant::now();
        let mut last = self.last_seq().await?;
        let mut since = Instant::now();
        loop {
            tokio::time::sleep(POLL).await;
            let now = self.last_seq().await?;
            if now != last {
                last = now;
                since = Instant::now();
            } else if since.elapsed() >= quiet {
                return Ok(last);
            }
            if start.elapsed() > WAIT {
                bail!("the log kept growing for {WAIT:?} (now at seq {last})");
            }
        }
    }

    /// Starts recording the JSON requests sent on `subject` (a plain
    /// subscription beside the intake's queue group sees every request).
    pub async fn watch(&self, subject: &str) -> anyhow::Result<Watch> {
        Watch::start(&self.nats_url(), subject).await
    }

    /// Fails naming the record when any stored event contains `secret`.
    pub async fn assert_log_free_of(&self, what: &str, secret: &str) -> anyhow::Result<()> {
        anyhow::ensure!(
            secret.len() >= 16,
            "{what}: too short to scan for ({secret:?})"
        );
        for r in self.raw_log().await? {
            if contains(&r.bytes, secret.as_bytes()) {
                bail!("{what} appears in log record {} ({})", r.seq, r.kind());
            }
        }
        Ok(())
    }
}
