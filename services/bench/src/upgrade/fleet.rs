//! The upgrade bench's fleet: per cluster a network, a server template
//! and a worker template whose assignments pin the old release, one
//! bootstrap server (`--servers 1`) or a `provision_cluster` of N servers,
//! and W workers — every node a simulated agent in this process whose
//! upgrades take `--node-upgrade-ms`.

use crate::lifecycle::Operator;
use anyhow::{bail, Context};
use powernode_actions::ActionName;
use powernode_agent::agent::Agent;
use powernode_agent::driver::simulated::{SimulatedRuntime, UpgradeBehaviour};
use powernode_agent::identity::Identity;
use powernode_agent::link::AgentLink;
use powernode_agent::state::StateStore;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The old release every node starts on, the new one it is upgraded to.
pub const FROM: (&str, &str) = ("1.30.5", "v1.30.5+k3s1");
/// The release the bench upgrades to.
pub const TO: (&str, &str) = ("1.31.0", "v1.31.0+k3s1");

/// How the bench's agents run.
#[derive(Clone)]
pub struct Agents {
    /// The link every agent shares.
    pub link: Arc<dyn AgentLink>,
    /// Heartbeat interval.
    pub interval: Duration,
    /// A node's whole upgrade.
    pub node_upgrade: Duration,
    /// Stops every agent.
    pub stop: CancellationToken,
}

impl Agents {
    /// Starts an agent for `credential` in the background; its instance id.
    async fn spawn(&self, credential: String, hostname: String) -> anyhow::Result<String> {
        let runtime = SimulatedRuntime::new(hostname, FROM.1.into()).with_upgrade_behaviour(
            UpgradeBehaviour {
                node_upgrade: self.node_upgrade,
                ..UpgradeBehaviour::default()
            },
        );
        let agent = Agent::start(
            Identity::ephemeral(),
            self.link.clone(),
            Box::new(runtime),
            StateStore::memory(),
            Some(credential),
        )
        .await?;
        let id = agent.instance_id().to_string();
        tokio::spawn(agent.run(self.interval, self.stop.clone()));
        Ok(id)
    }
}

/// One cluster of the fleet.
pub struct BenchCluster {
    /// Its server template.
    pub server_template: String,
    /// Its worker template.
    pub worker_template: String,
}

/// Polls `f` until it answers `Some`, backing off from 20 ms to 250 ms.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(20);
    loop {
        if let Some(v) = f().await? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// Adds the old and the new release of both modules to the catalog.
pub async fn catalog(op: &Operator) -> anyhow::Result<()> {
    for module in ["k3s-server", "k3s-agent"] {
        for (version, k3s) in [FROM, TO] {
            op.call(
                ActionName::CreateModuleVersion.as_str(),
                json!({ "module_name": module, "version": version, "k3s_version": k3s }),
            )
            .await?;
        }
    }
    Ok(())
}

/// The version id of `module` at `version`.
pub fn version_id(module: &str, version: &str) -> String {
    match module {
        "k3s-server" => format!("v-k3s-{version}"),
        _ => format!("v-k3s-agent-{version}"),
    }
}

async fn template(op: &Operator, name: &str) -> anyhow::Result<String> {
    let t = op
        .call(ActionName::CreateTemplate.as_str(), json!({ "name": name }))
        .await?;
    Ok(t["template"]["id"]
        .as_str()
        .context("template id")?
        .to_string())
}

async fn assign(
    op: &Operator,
    template: &str,
    module: &str,
    target: Option<&str>,
) -> anyhow::Result<()> {
    let mut args = json!({
        "template_id": template,
        "module_name": module,
        "module_version_id": version_id(module, FROM.0),
    });
    if let Some(t) = target {
        args["config"] = json!({ "target_cluster_id": t });
    }
    op.call(ActionName::AssignModuleToTemplate.as_str(), args)
        .await?;
    Ok(())
}

/// Brings up cluster `i`: `servers` servers, `workers` workers, all ready.
pub async fn one_cluster(
    op: &Operator,
    agents: &Agents,
    i: usize,
    servers: usize,
    workers: usize,
) -> anyhow::Result<BenchCluster> {
    let net = op.network(&format!("up-net-{i}")).await?;
    let server_t = template(op, &format!("up-{i}-server")).await?;
    let worker_t = template(op, &format!("up-{i}-worker")).await?;
    let cluster = if servers <= 1 {
        let host = format!("up-{i}-s0");
        let cred = op.instance(&host, &server_t, &net).await?;
        let first = agents.spawn(cred, host).await?;
        assign(op, &server_t, "k3s-server", None).await?;
        let boot = wait_until("the bootstrap", Duration::from_secs(300), || async {
            let c = op
                .call(
                    ActionName::ListClusters.as_str(),
                    json!({ "include_decommissioned": false }),
                )
                .await?;
            Ok(c["clusters"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["bootstrap_instance_id"] == first.as_str())
                .filter(|c| c["status"] == "active")
                .and_then(|c| c["id"].as_str().map(str::to_string)))
        })
        .await?;
        assign(op, &worker_t, "k3s-agent", Some(&boot)).await?;
        for w in 0..workers {
            let host = format!("up-{i}-w{w}");
            let cred = op.instance(&host, &worker_t, &net).await?;
            agents.spawn(cred, host).await?;
        }
        boot
    } else {
        for s in 0..servers {
            let host = format!("up-{i}-s{s}");
            let cred = op.instance(&host, &server_t, &net).await?;
            agents.spawn(cred, host).await?;
        }
        for w in 0..workers {
            let host = format!("up-{i}-w{w}");
            let cred = op.instance(&host, &worker_t, &net).await?;
            agents.spawn(cred, host).await?;
        }
        provision(op, &net, &server_t, &worker_t, servers, workers).await?
    };
    let want = (servers.max(1) + workers) as u64;
    wait_until("every node ready", Duration::from_secs(300), || async {
        let c = op
            .call(ActionName::GetCluster.as_str(), json!({ "id": cluster }))
            .await?;
        let nodes = op
            .call(
                ActionName::ListNodes.as_str(),
                json!({ "cluster_id": cluster }),
            )
            .await?;
        let ready = nodes["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| n["status"] == "ready")
            .count() as u64;
        Ok((c["cluster"]["status"] == "active" && ready == want).then_some(()))
    })
    .await?;
    Ok(BenchCluster {
        server_template: server_t,
        worker_template: worker_t,
    })
}

/// `provision_cluster` over the templates' idle instances (waits until the
/// agents are enrolled, which the skill needs); the cluster id.
async fn provision(
    op: &Operator,
    net: &str,
    server_t: &str,
    worker_t: &str,
    servers: usize,
    workers: usize,
) -> anyhow::Result<String> {
    // The skill pins nothing itself: the templates carry the old release.
    let args = json!({
        "skill": "provision_cluster",
        "inputs": {
            "network_id": net,
            "server_template_id": server_t,
            "worker_template_id": worker_t,
            "servers": servers,
            "workers": workers,
        }
    });
    let answer = wait_until("provision_cluster", Duration::from_secs(300), || async {
        match op
            .call(ActionName::ExecuteSkill.as_str(), args.clone())
            .await
        {
            Ok(a) => Ok(Some(a)),
            // Agents still enrolling: their instances are not idle yet.
            Err(e) if format!("{e:#}").contains("not_enough_instances") => Ok(None),
            Err(e) => Err(e),
        }
    })
    .await?;
    answer["cluster"]["id"]
        .as_str()
        .or_else(|| answer["execution"]["cluster_id"].as_str())
        .map(str::to_string)
        .context("provision_cluster answered no cluster")
}
