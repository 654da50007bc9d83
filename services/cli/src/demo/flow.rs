//! The tour: its order of steps, the setup steps, and the building blocks
//! the tutorial and runbook steps share (hosts, assignments, waits).

use super::narrator::{say_block, Narrator};
use super::DemoArgs;
use crate::clusters::render_list;
use crate::output::field;
use anyhow::Context;
use powernode_actions::ActionName;
use powernode_client::Api;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

/// The permissions of the demo's operator token.
const PERMISSIONS: [&str; 4] = [
    "system.kubernetes_provision",
    "system.kubernetes_decommission",
    "system.kubernetes_kubeconfig",
    "system.sdwan_failover",
];
/// Lightweight nodes (< 4 GiB) get flannel.
const MEMORY_MB: u64 = 2048;

/// What the tour built, for the closing hints.
pub struct Built {
    /// The prod cluster's id.
    pub prod: String,
    /// With `--keep`: the failover left waiting for approval.
    pub staged: Option<super::failover::Staged>,
}

/// A provisioned instance on its own template, peered on the network.
pub(super) struct Host {
    pub(super) template_id: String,
    pub(super) instance_id: String,
    pub(super) hostname: String,
}

/// The tour's state between steps.
pub struct Tour {
    admin: Api,
    pub(super) n: Narrator,
    network_id: String,
    /// Whether assignments pin the catalog's 1.30.5 (after the catalog step).
    pub(super) pinned: bool,
}

impl Tour {
    /// A tour driven with the admin token until it has its own operator.
    pub fn new(admin: Api, timeout: Duration) -> Self {
        let n = Narrator::new(admin.clone(), timeout);
        Self {
            admin,
            n,
            network_id: String::new(),
            pinned: false,
        }
    }

    /// Runs every step.
    pub async fn run(
        mut self,
        args: &DemoArgs,
        dir: &Path,
        url: &str,
        admin_token_file: &Path,
    ) -> anyhow::Result<Built> {
        self.n.step(
            "Setup",
            "an embedded platform: event log, every service, simulated agents",
        );
        self.n.info(&format!("API on {url}"));
        self.n.info(&format!("data dir {}", dir.display()));
        self.n.info(&format!(
            "admin token in {} (scoped to the system account)",
            admin_token_file.display()
        ));
        self.n.info(&format!(
            "simulated agents heartbeat every {} ms",
            args.heartbeat_ms
        ));
        self.operator(dir).await?;
        self.network().await?;
        self.catalog().await?;

        let prod = self.tutorial().await?;
        let staging = self.runbook_second_cluster().await?;
        self.runbook_targeted_worker(&prod, &staging).await?;
        self.runbook_ha(&prod).await?;
        self.dataplane(&prod, dir).await?;
        self.n.step(
            "Runbook Phase 6",
            &format!("cross-cluster view: {}", ActionName::ListClusters),
        );
        let list = self
            .n
            .call(ActionName::ListClusters.as_str(), json!({}))
            .await?;
        say_block(&render_list(&list, 4));
        self.n.events().await?;
        self.runbook_misrouted_worker(&prod).await?;
        self.runbook_decommission(&staging).await?;
        self.upgrade(&prod).await?;
        let staged = match args.keep {
            true => Some(self.stage_failover(&prod).await?),
            false => None,
        };
        Ok(Built { prod, staged })
    }

    /// The SD-WAN network the tour's instances are peers of.
    pub(super) fn network_id(&self) -> &str {
        &self.network_id
    }

    /// An account and an operator token for it; the rest runs with that token.
    async fn operator(&mut self, dir: &Path) -> anyhow::Result<()> {
        self.n.step(
            "Setup",
            &format!(
                "an account and an operator token ({}, {})",
                ActionName::CreateAccount,
                ActionName::CreateOperatorToken
            ),
        );
        let account = self
            .n
            .call(
                ActionName::CreateAccount.as_str(),
                json!({ "name": "demo" }),
            )
            .await?;
        let account_id = account["account"]["id"]
            .as_str()
            .with_context(|| format!("{} answered no account.id", ActionName::CreateAccount))?
            .to_string();
        let token = self
            .n
            .call(
                ActionName::CreateOperatorToken.as_str(),
                json!({ "account_id": account_id, "permissions": PERMISSIONS }),
            )
            .await?;
        let token = token["token"]
            .as_str()
            .with_context(|| format!("{} answered no token", ActionName::CreateOperatorToken))?;
        let token_file = dir.join("demo.token");
        write_secret(&token_file, token)?;
        self.n.info(&format!("account {account_id} (demo)"));
        self.n.info(&format!(
            "operator token with {} → {}",
            PERMISSIONS.join(", "),
            token_file.display()
        ));
        self.n.api = self.admin.with_token(token);
        self.n.events().await?;
        Ok(())
    }

    async fn network(&mut self) -> anyhow::Result<()> {
        self.n.step(
            "Tutorial · prerequisites",
            "an SD-WAN network whose pod_subnet_prefix carries flannel over WireGuard",
        );
        let net = self
            .n
            .call(
                ActionName::CreateNetwork.as_str(),
                json!({ "name": "k3s-net", "pod_subnet_prefix": "10.42.0.0/16", "routing_mode": "ibgp" }),
            )
            .await?;
        let net = &net["network"];
        self.network_id = net["id"]
            .as_str()
            .with_context(|| format!("{} answered no network.id", ActionName::CreateNetwork))?
            .to_string();
        self.n.info(&format!(
            "network {} (k3s-net): overlay {}, VIPs from {}, pod subnet {}",
            self.network_id,
            field(net, "overlay_prefix"),
            field(net, "vip_range"),
            field(net, "pod_subnet_prefix")
        ));
        self.n.events().await?;
        Ok(())
    }

    /// A template, a node on it, an instance of the node, an SD-WAN peer.
    pub(super) async fn host(&mut self, template: &str, hostname: &str) -> anyhow::Result<Host> {
        let t = self
            .n
            .call(
                ActionName::CreateTemplate.as_str(),
                json!({ "name": template }),
            )
            .await?;
        let template_id = str_at(&t, &["template", "id"])?;
        let node = self
            .n
            .call(
                ActionName::CreateNode.as_str(),
                json!({ "hostname": hostname, "node_template_id": template_id, "memory_mb": MEMORY_MB }),
            )
            .await?;
        let node_id = str_at(&node, &["node", "id"])?;
        let inst = self
            .n
            .call(
                ActionName::ProvisionInstance.as_str(),
                json!({ "node_id": node_id }),
            )
            .await?;
        let instance_id = str_at(&inst, &["id"])?;
        let peer = self
            .n
            .call(
                ActionName::AttachPeer.as_str(),
                json!({ "network_id": self.network_id, "node_instance_id": instance_id }),
            )
            .await?;
        self.n.info(&format!(
            "template {template_id} ({template}); node {node_id} ({hostname}, {MEMORY_MB} MiB → flannel)"
        ));
        self.n.info(&format!(
            "instance {instance_id} (its simulated agent enrolls); SD-WAN peer {}",
            field(&peer["peer"], "overlay_ip")
        ));
        Ok(Host {
            template_id,
            instance_id,
            hostname: hostname.to_string(),
        })
    }

    pub(super) async fn assign(
        &mut self,
        host: &Host,
        module: &str,
        target: Option<&str>,
    ) -> anyhow::Result<()> {
        let mut args = json!({ "template_id": host.template_id, "module_name": module });
        if let Some(t) = target {
            args["config"] = json!({ "target_cluster_id": t });
        }
        let pin = self.pin(module);
        if let Some(p) = &pin {
            args["module_version_id"] = json!(p);
        }
        self.n
            .call(ActionName::AssignModuleToTemplate.as_str(), args)
            .await?;
        self.n.info(&format!(
            "assigned {module}{} to {}{}",
            pin.map_or(String::new(), |p| format!(" pinned to {p}")),
            host.hostname,
            target.map_or(String::new(), |t| format!(" with target_cluster_id={t}"))
        ));
        Ok(())
    }

    /// Waits until the cluster `server` bootstraps is active; answers it.
    pub(super) async fn active(&mut self, server: &Host) -> anyhow::Result<Value> {
        let mut w = self.n.wait(&format!(
            "the cluster bootstrapped by {} to become active",
            server.hostname
        ));
        let cluster = loop {
            match self.n.cluster_of(&server.instance_id).await? {
                Some(c) if c["status"] == "active" => break c,
                Some(c) => {
                    w.pending(&format!(
                        "cluster {}: {}",
                        field(&c, "id"),
                        field(&c, "status")
                    ))
                    .await?
                }
                None => {
                    let phase = self.phase(&server.instance_id).await?;
                    w.pending(&format!("no cluster yet (agent k3s phase: {phase})"))
                        .await?
                }
            }
        };
        w.done(&format!(
            "cluster {} ({}) is active; its api_endpoint is the VIP {}",
            field(&cluster, "id"),
            field(&cluster, "name"),
            field(&cluster, "api_endpoint")
        ));
        self.n.events().await?;
        Ok(cluster)
    }

    /// Waits until `instance` is a ready node of `cluster` with `role`.
    pub(super) async fn joined(
        &mut self,
        cluster: &str,
        host: &Host,
        role: &str,
    ) -> anyhow::Result<()> {
        let mut w = self.n.wait(&format!(
            "{} to be a ready {role} of {cluster}",
            host.hostname
        ));
        loop {
            let nodes = self
                .n
                .call(
                    ActionName::ListNodes.as_str(),
                    json!({ "cluster_id": cluster }),
                )
                .await?;
            let row = nodes["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["instance_id"] == host.instance_id.as_str())
                .cloned();
            match row {
                Some(r) if r["status"] == "ready" && r["role"] == role => break,
                Some(r) => {
                    w.pending(&format!("{} {}", field(&r, "role"), field(&r, "status")))
                        .await?
                }
                None => {
                    let phase = self.phase(&host.instance_id).await?;
                    w.pending(&format!("not a node yet (agent k3s phase: {phase})"))
                        .await?
                }
            }
        }
        w.done(&format!("{} joined {cluster} as {role}", host.hostname));
        Ok(())
    }

    /// The instance's k3s phase, as `system_list_instances` shows it.
    pub(super) async fn phase(&self, instance: &str) -> anyhow::Result<String> {
        let list = self
            .n
            .call(ActionName::ListInstances.as_str(), json!({}))
            .await?;
        Ok(list["instances"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["id"] == instance)
            .map(|i| field(i, "k3s_phase"))
            .filter(|p| p != "-")
            .unwrap_or_else(|| "none".into()))
    }
}

/// A string at `path` in `v`, or an error naming the path.
fn str_at(v: &Value, path: &[&str]) -> anyhow::Result<String> {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_str()
        .map(str::to_string)
        .with_context(|| format!("the answer has no {}: {v}", path.join(".")))
}

/// Writes a secret readable by its owner only.
fn write_secret(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(f, "{text}")?;
    Ok(())
}
