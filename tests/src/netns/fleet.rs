//! The whole platform with every agent in its own host on the underlay:
//! nats-server and the node run on the test machine's loopback (the node
//! in-process), a [`TcpForward`] makes NATS reachable at `10.77.0.1:4222`
//! on the underlay, and each instance's real `powernode-agent` runs in its
//! host with the data plane on (its WireGuard interface through
//! `boringtun-cli`, the simulated k3s API on `[::]:6443`, VIP probes).

use super::{Host, HostProcess, TcpForward, Underlay};
use crate::failover_support::{config, failover_permissions, FailoverPolicy, NodeExtras};
use crate::lifecycle_support::{agent_bin, str_at, Operator, Platform, WAIT};
use anyhow::{anyhow, Context as _};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Agents' heartbeat interval (milliseconds).
pub const BEAT_MS: u64 = 150;
/// How often agents probe the VIPs of their cluster (milliseconds).
pub const PROBE_MS: u64 = 200;
/// The UDP port every agent's WireGuard listens on.
pub const WG_PORT: u16 = 51820;
/// Where agents reach NATS on the underlay.
pub const NATS_PORT: u16 = 4222;

/// The platform, an operator allowed to fail over, an SD-WAN network with a
/// pod prefix, and the underlay its agents' hosts plug into.
pub struct DataPlane {
    /// The platform (nats-server, node).
    pub p: Platform,
    /// An operator of a fresh account with the failover permission.
    pub op: Operator,
    /// The network every member is attached to.
    pub net: String,
    /// `wg-sdwan-<handle>` of the network.
    pub interface: String,
    /// The underlay (declared after the hosts that plug into it, it goes last).
    pub underlay: Underlay,
    nats: TcpForward,
}

/// One instance: its host, its peer and its running agent.
pub struct NsMember {
    /// Its hostname (and its host's label).
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

impl DataPlane {
    /// Starts the platform with `policy`, an operator, a network with
    /// `pod_subnet_prefix`, the underlay, and NATS forwarded onto it.
    pub async fn start(policy: FailoverPolicy, pod_subnet_prefix: &str) -> anyhow::Result<Self> {
        let underlay = Underlay::new()?;
        let mut p = Platform::start_with(NodeExtras {
            failover: config(policy),
            ..NodeExtras::default()
        })
        .await?;
        p.agent_heartbeat_ms = Some(BEAT_MS);
        let local: SocketAddr = p
            .nats_url()
            .rsplit("://")
            .next()
            .and_then(|a| a.parse().ok())
            .with_context(|| format!("nats URL {}", p.nats_url()))?;
        let nats = underlay.forward(NATS_PORT, local)?;
        let op = p
            .operator_with("dataplane", &failover_permissions())
            .await?;
        let net = op.network("sdwan", Some(pod_subnet_prefix)).await?;
        let n = op.network_json(&net).await?;
        let handle = n["handle"]
            .as_str()
            .or_else(|| n["network"]["handle"].as_str())
            .with_context(|| format!("no handle in {n}"))?;
        Ok(Self {
            interface: powernode_events::wireguard::interface_name(handle),
            p,
            op,
            net,
            underlay,
            nats,
        })
    }

    /// The NATS URL agents use (on the underlay).
    pub fn nats_url(&self) -> String {
        format!("nats://{}", self.nats.listen)
    }

    /// A template with `module` (targeting `cluster` when given), a node and
    /// an instance attached to the network, a host, and its agent running.
    pub async fn member(
        &self,
        hostname: &str,
        module: &str,
        cluster: Option<&str>,
    ) -> anyhow::Result<NsMember> {
        let template_id = self.op.template(&format!("{hostname}-template")).await?;
        let (instance_id, credential) = self.op.provision(hostname, &template_id, 2048).await?;
        let peer = str_at(&self.op.attach(&self.net, &instance_id).await?, "/id")?;
        self.op.assign(&template_id, module, cluster).await?;
        let host = self.underlay.host(hostname)?;
        let state_dir = self.p.state_dir(hostname);
        let agent = self.spawn_agent(&host, &state_dir, Some(&credential))?;
        Ok(NsMember {
            hostname: hostname.to_string(),
            instance_id,
            peer,
            state_dir,
            agent,
            host,
        })
    }

    /// Runs `powernode-agent` in `host` with the data plane on; log in
    /// `<state_dir>.log` (appended across restarts).
    pub fn spawn_agent(
        &self,
        host: &Host,
        state_dir: &std::path::Path,
        credential: Option<&str>,
    ) -> anyhow::Result<HostProcess> {
        std::fs::create_dir_all(state_dir)?;
        let boringtun = super::which("boringtun-cli").context("boringtun-cli on PATH")?;
        let mut cmd = host.command(agent_bin()?);
        cmd.args(["--nats", &self.nats_url(), "--runtime", "simulated"])
            .arg("--state-dir")
            .arg(state_dir)
            .args(["--heartbeat-ms", &BEAT_MS.to_string()])
            .args(["--wireguard-endpoint", &format!("{}:{WG_PORT}", host.addr)])
            .arg("--wireguard-userspace")
            .arg(boringtun)
            .args(["--k3s-api-listen", "[::]:6443"])
            .args(["--probe-interval-ms", &PROBE_MS.to_string()])
            .env("RUST_LOG", "info")
            .env_remove("POWERNODE_ENROLL");
        if let Some(c) = credential {
            cmd.args(["--enroll", c]);
        }
        host.spawn(cmd, &state_dir.with_extension("log"))
    }

    /// Restarts `m`'s agent with its state dir (it is enrolled already).
    pub fn restart(&self, m: &mut NsMember) -> anyhow::Result<()> {
        m.agent.kill();
        m.agent = self.spawn_agent(&m.host, &m.state_dir, None)?;
        Ok(())
    }

    /// A bootstrap server and its active cluster (id).
    pub async fn bootstrap(&self, hostname: &str) -> anyhow::Result<(NsMember, String)> {
        let m = self
            .member(hostname, crate::lifecycle_support::SERVER, None)
            .await?;
        let c = self
            .op
            .wait_cluster_active(&m.instance_id)
            .await
            .with_context(|| format!("agent log of {hostname}:\n{}", m.agent.log_tail(30)))?;
        Ok((m, str_at(&c, "/id")?))
    }

    /// A member joining `cluster` with `module`, waited for until ready.
    pub async fn join(
        &self,
        hostname: &str,
        module: &str,
        cluster: &str,
    ) -> anyhow::Result<NsMember> {
        let m = self.member(hostname, module, Some(cluster)).await?;
        self.op
            .wait_node_ready(cluster, &m.instance_id)
            .await
            .with_context(|| format!("agent log of {hostname}:\n{}", m.agent.log_tail(30)))?;
        Ok(m)
    }

    /// `system_sdwan_get_peer_config({peer_id})`.
    pub async fn peer_config(&self, peer: &str) -> anyhow::Result<Value> {
        self.op
            .ok("system_sdwan_get_peer_config", json!({ "peer_id": peer }))
            .await
    }

    /// Waits until every member's agent applied its desired config
    /// (`in_sync`); their peer configs.
    pub async fn wait_in_sync(&self, members: &[&NsMember]) -> anyhow::Result<Vec<Value>> {
        crate::lifecycle_support::wait_until(
            WAIT,
            "every agent applied its desired WireGuard config",
            || async move {
                let mut out = Vec::new();
                for m in members {
                    let c = self
                        .peer_config(&m.peer)
                        .await
                        .map_err(|e| format!("{e:#}"))?;
                    if c["in_sync"] != true {
                        return Err(format!(
                            "{} not in sync: {c}\nagent log:\n{}",
                            m.hostname,
                            m.agent.log_tail(8)
                        ));
                    }
                    out.push(c);
                }
                Ok(out)
            },
        )
        .await
    }

    /// `kubernetes_get_kubeconfig` of `cluster`.
    pub async fn kubeconfig(&self, cluster: &str) -> anyhow::Result<String> {
        let k = self
            .op
            .ok(
                "kubernetes_get_kubeconfig",
                json!({ "cluster_id": cluster }),
            )
            .await?;
        str_at(&k, "/kubeconfig")
    }

    /// The cluster's VIP (`system_sdwan_get_virtual_ip`).
    pub async fn vip(&self, cluster: &str) -> anyhow::Result<Value> {
        let v = self
            .op
            .ok(
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
        crate::lifecycle_support::wait_until(WAIT, expected, || async move {
            let v = self.vip(cluster).await.map_err(|e| format!("{e:#}"))?;
            if pred(&v) {
                Ok(v)
            } else {
                Err(v.to_string())
            }
        })
        .await
    }
}

/// `kubectl --kubeconfig <file> <args…>` in `host` (its own `HOME`, so no
/// cache is shared); stdout, or the error with stderr.
pub fn kubectl(host: &Host, kubeconfig: &std::path::Path, args: &[&str]) -> anyhow::Result<String> {
    let home = kubeconfig
        .parent()
        .ok_or_else(|| anyhow!("kubeconfig {} has no directory", kubeconfig.display()))?;
    super::run(
        host.command("kubectl")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--request-timeout", "5s"])
            .args(args)
            .env("HOME", home),
    )
    .with_context(|| format!("kubectl in host {}", host.label))
}
