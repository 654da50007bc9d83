//! Runtime drivers: what actually installs and starts k3s on the node.
//!
//! The agent's reconcile loop decides *what* to run (bootstrap a cluster,
//! join one as a server or as a worker, hold a virtual IP) from its module
//! assignment and the platform's answers; a [`Runtime`] does it. Two drivers:
//!
//! * [`k3s::K3sRuntime`] — the real one: writes `/etc/rancher/k3s/config.yaml`
//!   and the systemd drop-ins, runs the installer and `systemctl`, reads the
//!   kubeconfig and node token k3s generates. Every path is under a root
//!   directory and every command goes through a [`runner::CommandRunner`], so
//!   it is tested against a temp root with a recording runner. A held VIP is
//!   an `ip -6 addr` on the SD-WAN interface.
//! * [`simulated::SimulatedRuntime`] — no k3s; produces realistic artefacts
//!   (a kubeconfig with a real per-cluster CA, a `K10…::server:…` token) for
//!   demos, tests and the rig, and keeps the VIPs it holds in memory. Given a
//!   listen address it also serves a simulated Kubernetes API over TLS
//!   ([`apiserver`]) that the real `kubectl` talks to; given a state dir it
//!   remembers its cluster across restarts, like k3s's own data dir, and a
//!   restarted agent's server serves its API again.

pub mod apiserver;
pub mod k3s;
pub mod runner;
pub mod simulated;

pub use powernode_protocol::{ClusterCa, ClusterNode, ModuleVersionPin};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What the node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// `k3s server` (control plane + etcd).
    Server,
    /// `k3s agent` (worker).
    Agent,
}

/// How to start (or restart) a k3s server. Its `Debug` output redacts the
/// token and the CA.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerPlan {
    /// `--cluster-init`: this server creates the cluster (embedded etcd).
    pub cluster_init: bool,
    /// `--server <url>`: join the existing cluster at this URL
    /// (e.g. `https://[fd00:abcd:1::100]:6443`); `None` when bootstrapping.
    pub server_url: Option<String>,
    /// `--token`: the cluster's join token (secret; never logged).
    pub token: String,
    /// `--tls-san` values (the VIP, so kubectl through the VIP validates).
    pub tls_sans: Vec<String>,
    /// The node's SD-WAN overlay address (its /128), when it has one: a
    /// further `--tls-san`, so the API is also verified at the node itself.
    pub overlay_ip: Option<String>,
    /// The cluster's CA, handed to a joining server by the platform: the
    /// simulated runtime issues its API certificate from it (real k3s
    /// ignores it; it shares its CA through its datastore). Secret.
    pub cluster_ca: Option<ClusterCa>,
    /// Further flags stamped by the platform, verbatim
    /// (e.g. `--flannel-iface=wg-sdwan-prod`, `--flannel-backend=host-gw`,
    /// `--cluster-cidr=10.42.0.0/16`).
    pub extra_flags: Vec<String>,
}

impl ServerPlan {
    /// Every subject alternative name the API certificate needs: the
    /// `tls_sans` and the overlay address.
    pub fn sans(&self) -> Vec<String> {
        let mut sans = self.tls_sans.clone();
        sans.extend(self.overlay_ip.clone());
        sans
    }
}

impl std::fmt::Debug for ServerPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerPlan")
            .field("cluster_init", &self.cluster_init)
            .field("server_url", &self.server_url)
            .field("token", &"<redacted>")
            .field("tls_sans", &self.tls_sans)
            .field("overlay_ip", &self.overlay_ip)
            .field(
                "cluster_ca",
                &self.cluster_ca.as_ref().map(|_| "<redacted>"),
            )
            .field("extra_flags", &self.extra_flags)
            .finish()
    }
}

/// How to start a k3s agent (worker). Its `Debug` output redacts the token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentPlan {
    /// `K3S_URL`, e.g. `https://[fd00:abcd:1::100]:6443`.
    pub server_url: String,
    /// `K3S_TOKEN` (secret; never logged).
    pub token: String,
}

impl std::fmt::Debug for AgentPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentPlan")
            .field("server_url", &self.server_url)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// What a bootstrap server hands the platform (secrets: they go to the
/// platform's secret store, never into an event).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootstrapArtifacts {
    /// The admin kubeconfig k3s wrote (`/etc/rancher/k3s/k3s.yaml`).
    pub kubeconfig: String,
    /// The node token (`/var/lib/rancher/k3s/server/node-token`).
    pub node_token: String,
    /// The cluster CA, when the runtime made one the platform must hand to
    /// joining servers (the simulated runtime; real k3s keeps its own).
    #[serde(default)]
    pub cluster_ca: Option<ClusterCa>,
}

impl std::fmt::Debug for BootstrapArtifacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapArtifacts")
            .field("kubeconfig", &"<redacted>")
            .field("node_token", &"<redacted>")
            .field(
                "cluster_ca",
                &self.cluster_ca.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// A driver failure, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A command failed or could not be started.
    #[error("command `{command}` failed: {detail}")]
    Command {
        /// The command (secrets redacted).
        command: String,
        /// Exit status / stderr / spawn error.
        detail: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// k3s did not produce what was expected (e.g. no kubeconfig after start).
    #[error("{0}")]
    Unexpected(String),
}

/// A runtime driver. Calls are blocking; each is idempotent (running it
/// again after a crash converges to the same files and services).
pub trait Runtime: Send {
    /// `simulated` or `k3s`.
    fn name(&self) -> &'static str;
    /// The k3s version it installs, e.g. `v1.30.5+k3s1`.
    fn version(&self) -> String;
    /// The Kubernetes node name (the hostname).
    fn node_name(&self) -> String;
    /// Installs k3s for `role` without starting it.
    fn install(&mut self, role: Role) -> Result<(), RuntimeError>;
    /// Writes the server configuration for `plan` and (re)starts `k3s`.
    fn start_server(&mut self, plan: &ServerPlan) -> Result<(), RuntimeError>;
    /// Reads the kubeconfig and node token a started server generated.
    fn read_artifacts(&mut self) -> Result<BootstrapArtifacts, RuntimeError>;
    /// Writes the `k3s-agent` drop-in with `K3S_URL` / `K3S_TOKEN` and
    /// (re)starts `k3s-agent`.
    fn start_agent(&mut self, plan: &AgentPlan) -> Result<(), RuntimeError>;
    /// Puts the virtual IP `vip` on the node, held at fencing `generation`
    /// (holding it again, at any generation, is not an error).
    fn hold_vip(&mut self, vip: &str, generation: u64) -> Result<(), RuntimeError>;
    /// Takes the virtual IP `vip` off the node (releasing one that is not
    /// there is not an error).
    fn release_vip(&mut self, vip: &str) -> Result<(), RuntimeError>;
    /// What the platform knows of this node's cluster, from each heartbeat
    /// reply: this node's `instance_id` and the cluster's nodes (the
    /// simulated API lists them; real k3s knows its own).
    fn observe_cluster(&mut self, instance_id: &str, nodes: &[ClusterNode]) {
        let _ = (instance_id, nodes);
    }
    /// Installs the catalog version `pin` for `role` without starting it
    /// (`None`: the driver's default release); [`Self::version`] answers
    /// its release from then on.
    fn install_version(
        &mut self,
        role: Role,
        pin: Option<&ModuleVersionPin>,
    ) -> Result<(), RuntimeError>;
    /// Marks the node unschedulable.
    fn cordon(&mut self, role: Role) -> Result<(), RuntimeError>;
    /// Evicts the node's pods (DaemonSets stay), within `timeout`.
    fn drain(&mut self, role: Role, timeout: Duration) -> Result<(), RuntimeError>;
    /// Installs `pin` (as [`Self::install_version`]) and restarts k3s on it.
    fn upgrade(&mut self, role: Role, pin: Option<&ModuleVersionPin>) -> Result<(), RuntimeError>;
    /// Rewrites the platform-stamped flags with `extra_flags` and restarts
    /// k3s (a re-stamp): a server's whole stamp, a worker's per-node flags
    /// (`--flannel-iface`).
    fn restamp(&mut self, role: Role, extra_flags: &[String]) -> Result<(), RuntimeError>;
    /// Waits at most `timeout` for the node to report `Ready`.
    fn wait_ready(&mut self, role: Role, timeout: Duration) -> Result<(), RuntimeError>;
    /// Marks the node schedulable again.
    fn uncordon(&mut self, role: Role) -> Result<(), RuntimeError>;
    /// Takes the cluster's rotated join token `new` in place of `old`:
    /// with `rotate` (one server of the cluster) it first rotates the
    /// token in k3s itself (`k3s token rotate`); every node then rewrites
    /// its stored token (server config, agent environment) without
    /// restarting. Neither token ever appears in an error.
    fn adopt_token(
        &mut self,
        role: Role,
        old: &str,
        new: &str,
        rotate: bool,
    ) -> Result<(), RuntimeError>;
}

/// Which driver to build (`--runtime`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RuntimeKind {
    /// No k3s; realistic artefacts.
    Simulated,
    /// The real k3s via its installer and systemd.
    K3s,
}
