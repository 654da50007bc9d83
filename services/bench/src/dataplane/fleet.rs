//! The bench's platform: a node in this process on the scratch JetStream,
//! an operator allowed to fail over, one SD-WAN network, the underlay with
//! NATS forwarded onto it, and real `powernode-agent`s, each in its own
//! host with the data plane on.

use super::netlab::{which, Host, HostProcess, TcpForward, Underlay};
use crate::lifecycle::Operator;
use anyhow::{bail, Context as _};
use serde_json::{json, Value};
use std::net::{SocketAddr, ToSocketAddrs as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The UDP port every agent's WireGuard listens on.
pub(super) const WG_PORT: u16 = 51820;
/// Where agents reach NATS on the underlay.
const NATS_PORT: u16 = 4222;
/// How long one wait for the platform may take.
pub(super) const WAIT: Duration = Duration::from_secs(60);
/// How often a wait polls.
const POLL: Duration = Duration::from_millis(50);

/// How agents run.
pub(super) struct AgentSpec {
    /// The `powernode-agent` binary.
    pub bin: PathBuf,
    /// `--heartbeat-ms`.
    pub heartbeat_ms: u64,
    /// `--probe-interval-ms`.
    pub probe_ms: u64,
    /// `boringtun-cli`'s full path.
    pub boringtun: PathBuf,
}

/// The operator side, the network and the underlay.
pub(super) struct Fleet {
    /// An operator of the bench's account (failover allowed).
    pub op: Operator,
    /// The network every member is attached to.
    pub net: String,
    /// `wg-sdwan-<handle>` of the network.
    pub interface: String,
    /// Where the agents' state dirs and logs go.
    pub dir: PathBuf,
    /// How agents run.
    pub spec: AgentSpec,
    nats: TcpForward,
    /// The underlay (hosts plug into it; dropped last by the caller).
    pub underlay: Underlay,
}

/// One instance: its host, its peer, its running agent.
pub(super) struct Member {
    /// Its hostname (and host label).
    pub hostname: String,
    /// Instance id.
    pub instance_id: String,
    /// Its peer on the network.
    pub peer: String,
    /// The agent's state dir (kept across restarts).
    pub state_dir: PathBuf,
    /// The running agent (killed on drop).
    pub agent: HostProcess,
    /// Its host (dropped after the agent).
    pub host: Host,
}

impl Member {
    /// The agent's log file.
    pub fn log(&self) -> PathBuf {
        self.state_dir.with_extension("log")
    }
}

impl Fleet {
    /// The network (pod prefix `10.42.0.0/16`), the underlay and NATS
    /// forwarded onto it from `nats_url` (this machine).
    pub async fn start(
        op: Operator,
        nats_url: &str,
        dir: PathBuf,
        spec: AgentSpec,
    ) -> anyhow::Result<Self> {
        let underlay = Underlay::new()?;
        let hostport = nats_url
            .split(',')
            .next()
            .and_then(|u| u.rsplit("://").next())
            .unwrap_or(nats_url);
        let local: SocketAddr = hostport
            .to_socket_addrs()
            .with_context(|| format!("resolving the NATS address {hostport}"))?
            .next()
            .with_context(|| format!("the NATS address {hostport} resolves to nothing"))?;
        let nats = underlay.forward(NATS_PORT, local)?;
        let n = op
            .call(
                "system_sdwan_create_network",
                json!({ "name": "bench-sdwan", "pod_subnet_prefix": "10.42.0.0/16" }),
            )
            .await?;
        let net = str_at(&n, "/network/id")?;
        let all = op.call("system_sdwan_list_networks", json!({})).await?;
        let handle = all["networks"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|x| x["id"] == net.as_str())
            .and_then(|x| x["handle"].as_str().map(str::to_string))
            .with_context(|| format!("no handle for network {net} in {all}"))?;
        Ok(Self {
            interface: powernode_events::wireguard::interface_name(&handle),
            op,
            net,
            dir,
            spec,
            nats,
            underlay,
        })
    }

    /// A template with `module` (joining `cluster` when given), a node, an
    /// instance attached to the network, its host, and its agent running.
    pub async fn member(
        &self,
        hostname: &str,
        module: &str,
        cluster: Option<&str>,
    ) -> anyhow::Result<Member> {
        let t = self
            .op
            .call(
                "system_create_template",
                json!({ "name": format!("{hostname}-template") }),
            )
            .await?;
        let template = str_at(&t, "/template/id")?;
        let node = self
            .op
            .call(
                "system_create_node",
                json!({ "hostname": hostname, "node_template_id": template, "memory_mb": 2048 }),
            )
            .await?;
        let i = self
            .op
            .call(
                "system_provision_instance",
                json!({ "node_id": str_at(&node, "/node/id")? }),
            )
            .await?;
        let (instance_id, credential) = (str_at(&i, "/id")?, str_at(&i, "/enrollment_credential")?);
        let p = self
            .op
            .call(
                "system_sdwan_attach_peer",
                json!({ "network_id": self.net, "node_instance_id": instance_id }),
            )
            .await?;
        let peer = str_at(&p, "/peer/id")?;
        let mut assign = json!({ "template_id": template, "module_name": module });
        if let Some(c) = cluster {
            assign["config"] = json!({ "target_cluster_id": c });
        }
        self.op
            .call("system_assign_module_to_template", assign)
            .await?;
        let host = self.underlay.host(hostname)?;
        let state_dir = self.dir.join("agents").join(hostname);
        let agent = self.spawn_agent(&host, &state_dir, Some(&credential))?;
        Ok(Member {
            hostname: hostname.to_string(),
            instance_id,
            peer,
            state_dir,
            agent,
            host,
        })
    }

    /// Runs `powernode-agent` in `host` with the data plane on; its log in
    /// `<state_dir>.log` (appended across restarts).
    pub fn spawn_agent(
        &self,
        host: &Host,
        state_dir: &Path,
        credential: Option<&str>,
    ) -> anyhow::Result<HostProcess> {
        std::fs::create_dir_all(state_dir)?;
        let mut cmd = host.command(&self.spec.bin);
        cmd.args(["--nats", &format!("nats://{}", self.nats.listen)])
            .args(["--runtime", "simulated"])
            .arg("--state-dir")
            .arg(state_dir)
            .args(["--heartbeat-ms", &self.spec.heartbeat_ms.to_string()])
            .args(["--wireguard-endpoint", &format!("{}:{WG_PORT}", host.addr)])
            .arg("--wireguard-userspace")
            .arg(&self.spec.boringtun)
            .args(["--k3s-api-listen", "[::]:6443"])
            .args(["--probe-interval-ms", &self.spec.probe_ms.to_string()])
            .env("RUST_LOG", "info")
            .env_remove("POWERNODE_ENROLL")
            .env_remove("POWERNODE_NATS_CREDS");
        if let Some(c) = credential {
            cmd.args(["--enroll", c]);
        }
        host.spawn(cmd, &state_dir.with_extension("log"))
    }

    /// Restarts `m`'s agent with its state dir (enrolled already).
    pub fn restart(&self, m: &mut Member) -> anyhow::Result<()> {
        m.agent.kill();
        m.agent = self.spawn_agent(&m.host, &m.state_dir, None)?;
        Ok(())
    }

    /// `system_sdwan_get_peer_config({peer_id})`.
    pub async fn peer_config(&self, peer: &str) -> anyhow::Result<Value> {
        self.op
            .call("system_sdwan_get_peer_config", json!({ "peer_id": peer }))
            .await
    }

    /// The cluster's VIP.
    pub async fn vip(&self, cluster: &str) -> anyhow::Result<Value> {
        let v = self
            .op
            .call(
                "system_sdwan_get_virtual_ip",
                json!({ "cluster_id": cluster }),
            )
            .await?;
        Ok(v["virtual_ip"].clone())
    }

    /// Waits until the cluster's VIP satisfies `pred`; the VIP.
    pub async fn wait_vip(
        &self,
        cluster: &str,
        expected: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let pred = &pred;
        wait_until(expected, || async move {
            let v = self.vip(cluster).await.map_err(|e| format!("{e:#}"))?;
            if pred(&v) {
                Ok(v)
            } else {
                Err(v.to_string())
            }
        })
        .await
    }

    /// Waits until every member's agent applied its desired config.
    pub async fn wait_in_sync(&self, members: &[&Member]) -> anyhow::Result<()> {
        wait_until(
            "every agent applied its desired WireGuard config",
            || async {
                for m in members {
                    let c = self
                        .peer_config(&m.peer)
                        .await
                        .map_err(|e| format!("{e:#}"))?;
                    if c["in_sync"] != true {
                        return Err(format!(
                            "{} not in sync: desired revision {}, applied {}\nagent log:\n{}",
                            m.hostname,
                            c["desired"]["revision"],
                            c["applied_revision"],
                            m.agent.log_tail(6)
                        ));
                    }
                }
                Ok(())
            },
        )
        .await
    }

    /// Waits until the cluster bootstrapped by `m` is active; its id.
    pub async fn wait_cluster_active(&self, m: &Member) -> anyhow::Result<String> {
        wait_until(
            &format!("an active cluster bootstrapped by {}", m.hostname),
            || async {
                let all = self
                    .op
                    .call("kubernetes_list_clusters", json!({}))
                    .await
                    .map_err(|e| format!("{e:#}"))?;
                let mine = all["clusters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|c| c["bootstrap_instance_id"] == m.instance_id.as_str());
                match mine {
                    Some(c) if c["status"] == "active" => {
                        c["id"].as_str().map(str::to_string).ok_or(c.to_string())
                    }
                    other => Err(format!("{other:?}\nagent log:\n{}", m.agent.log_tail(6))),
                }
            },
        )
        .await
    }

    /// Waits until every one of `members` is a ready node of `cluster`.
    pub async fn wait_nodes_ready(&self, cluster: &str, members: &[&Member]) -> anyhow::Result<()> {
        wait_until("every member a ready node of the cluster", || async {
            let n = self
                .op
                .call("kubernetes_list_nodes", json!({ "cluster_id": cluster }))
                .await
                .map_err(|e| format!("{e:#}"))?;
            let nodes = n["nodes"].as_array().cloned().unwrap_or_default();
            for m in members {
                let ready = nodes
                    .iter()
                    .any(|x| x["instance_id"] == m.instance_id.as_str() && x["status"] == "ready");
                if !ready {
                    return Err(format!(
                        "{} not ready yet\nagent log:\n{}",
                        m.hostname,
                        m.agent.log_tail(6)
                    ));
                }
            }
            Ok(())
        })
        .await
    }

    /// `kubernetes_get_kubeconfig` of `cluster`.
    pub async fn kubeconfig(&self, cluster: &str) -> anyhow::Result<String> {
        let k = self
            .op
            .call(
                "kubernetes_get_kubeconfig",
                json!({ "cluster_id": cluster }),
            )
            .await?;
        str_at(&k, "/kubeconfig")
    }
}

/// The `boringtun-cli` on `PATH`.
pub(super) fn boringtun() -> anyhow::Result<PathBuf> {
    which("boringtun-cli").context("boringtun-cli is not on PATH")
}

/// Polls `check` every 50 ms until it answers `Ok`, or fails after
/// [`WAIT`] with `expected` and the last `Err` (what was seen instead).
pub(super) async fn wait_until<T, F, Fut>(expected: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        match check().await {
            Ok(v) => return Ok(v),
            Err(seen) if start.elapsed() > WAIT => {
                bail!("waited {WAIT:?} for {expected}; last seen: {seen}")
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// The string at JSON `pointer` in `v`, or an error naming both.
pub(super) fn str_at(v: &Value, pointer: &str) -> anyhow::Result<String> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_string)
        .with_context(|| format!("no string at {pointer} in {v}"))
}
