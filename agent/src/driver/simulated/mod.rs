//! The simulated driver: no k3s, no commands. It keeps what it was asked
//! to do in memory and, once a cluster has been "created", hands back
//! artefacts like the real ones: a kubeconfig whose CA is a real
//! per-cluster CA and whose user is a client certificate issued by it, and
//! a `K10<ca hash>::server:<password>` node token ([`artifacts`]). The
//! virtual IPs it holds are a map in memory ([`HeldAddresses`]), forgotten
//! on restart. Given a state dir ([`SimulatedRuntime::with_state_dir`]) it
//! saves the rest there, as k3s keeps its data dir ([`saved`]): a restarted
//! agent's server is still installed and started, with the same CA.
//!
//! Given a listen address ([`SimulatedRuntime::with_api_listen`]), a
//! started server (bootstrap or join) also serves the simulated Kubernetes
//! API there ([`crate::driver::apiserver`]) with a certificate issued by the
//! cluster CA: the bootstrap's own, or the one the platform hands a joining
//! server. The certificate's SANs are the plan's (`tls_sans`, the overlay
//! address) and the node's local names; it is issued again when they
//! change.
//!
//! It refuses what k3s would refuse (a plan that neither creates nor joins,
//! a `K10…` token on the first server, starting what was not installed), so
//! the rig catches what a real node would trip on.

mod api;
mod artifacts;
pub mod saved;
mod upgrade;

pub use upgrade::UpgradeBehaviour;

use super::apiserver::ApiServer;
use super::k3s::{
    secure_token_parts, token_password, validate_agent_plan, validate_server_plan, API_PORT,
    SECURE_TOKEN_ON_FIRST_SERVER,
};
use super::{
    AgentPlan, BootstrapArtifacts, ClusterCa, ClusterNode, ModuleVersionPin, Role, Runtime,
    RuntimeError, ServerPlan,
};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use powernode_protocol::token::new_token;

/// The virtual IPs a simulated node holds (address → generation): a view
/// shared with its driver, so a test keeps it after the driver is handed
/// to an agent. Clones of a driver share it (they are the same node).
#[derive(Debug, Clone, Default)]
pub struct HeldAddresses(Arc<Mutex<BTreeMap<String, u64>>>);

impl HeldAddresses {
    /// Every held address with the generation it is held at.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.lock().clone()
    }

    /// The generation `vip` is held at, if it is held.
    pub fn generation(&self, vip: &str) -> Option<u64> {
        self.lock().get(vip).copied()
    }

    /// The generation at which the address `host` is held, comparing
    /// addresses rather than spellings (`[fd00::1]`, `fd00:0::1/128` and
    /// `fd00::1` are one address).
    pub fn generation_of_address(&self, host: &str) -> Option<u64> {
        let parse = |s: &str| {
            let s = s.trim();
            let s = s.split('/').next().unwrap_or(s);
            let s = s
                .strip_prefix('[')
                .and_then(|s| s.strip_suffix(']'))
                .unwrap_or(s);
            s.parse::<IpAddr>().ok()
        };
        let held = self.lock();
        if let Some(generation) = held.get(host) {
            return Some(*generation);
        }
        let wanted = parse(host)?;
        held.iter()
            .find(|(vip, _)| parse(vip) == Some(wanted))
            .map(|(_, generation)| *generation)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u64>> {
        // A poisoned lock only means a panic elsewhere; the map is intact.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A k3s stand-in that runs nothing.
#[derive(Debug, Clone)]
pub struct SimulatedRuntime {
    node_name: String,
    version: String,
    installed: Vec<Role>,
    server: Option<ServerPlan>,
    agent: Option<AgentPlan>,
    artifacts: Option<BootstrapArtifacts>,
    vips: HeldAddresses,
    /// The cluster CA: made at bootstrap, or handed to a joining server.
    ca: Option<ClusterCa>,
    /// Where the simulated API listens once a server is started (none: no
    /// API).
    api_listen: Option<SocketAddr>,
    /// The running API (shared by clones: they are the same node).
    api: Option<Arc<ApiServer>>,
    /// The SANs the API's current certificate was issued for.
    cert_sans: Vec<String>,
    /// The CA certificate the API's current certificate was issued from
    /// (a CA handed over after a first start must be served from too).
    cert_ca: Option<String>,
    /// This node's instance id and its cluster's nodes, as the platform
    /// last said.
    instance_id: Option<String>,
    nodes: Vec<ClusterNode>,
    /// Where the node is saved (none: memory only).
    state_file: Option<PathBuf>,
    /// The release installed when no catalog version is pinned.
    default_version: String,
    /// The catalog version installed, when one was pinned.
    module_version_id: Option<String>,
    /// Whether the node is cordoned.
    cordoned: bool,
    /// A worker's platform-stamped flags (a re-stamp's `--flannel-iface`).
    agent_flags: Vec<String>,
    /// How many times this node rotated its cluster's join token.
    token_rotations: u32,
    /// How upgrades behave (pace, injected failures).
    behaviour: UpgradeBehaviour,
    /// Whether a `wait_ready` failed since the last successful one (so a
    /// rollback's `wait_ready` can be made to fail too).
    failed_ready: bool,
}

impl SimulatedRuntime {
    /// A node called `node_name` "running" k3s `version`.
    pub fn new(node_name: String, version: String) -> Self {
        Self {
            node_name,
            version: version.clone(),
            installed: Vec::new(),
            server: None,
            agent: None,
            artifacts: None,
            vips: HeldAddresses::default(),
            ca: None,
            api_listen: None,
            api: None,
            cert_sans: Vec::new(),
            cert_ca: None,
            instance_id: None,
            nodes: Vec::new(),
            state_file: None,
            default_version: version,
            module_version_id: None,
            cordoned: false,
            agent_flags: Vec::new(),
            token_rotations: 0,
            behaviour: UpgradeBehaviour::default(),
            failed_ready: false,
        }
    }

    /// Serves the simulated Kubernetes API on `addr` (e.g. `[::]:6443`, or
    /// `127.0.0.1:0` in tests) once a server is started.
    pub fn with_api_listen(mut self, addr: SocketAddr) -> Self {
        self.api_listen = Some(addr);
        self
    }

    /// Where the simulated API listens, once it does.
    pub fn api_address(&self) -> Option<SocketAddr> {
        self.api.as_ref().map(|api| api.local_addr())
    }

    /// The cluster CA this node issues its API certificate from.
    pub fn cluster_ca(&self) -> Option<&ClusterCa> {
        self.ca.as_ref()
    }

    /// The SANs of the API's current certificate.
    pub fn certificate_sans(&self) -> &[String] {
        &self.cert_sans
    }

    /// The virtual IPs this node holds (a shared view that stays current).
    pub fn held_addresses(&self) -> HeldAddresses {
        self.vips.clone()
    }

    /// Whether k3s was installed for `role`.
    pub fn is_installed(&self, role: Role) -> bool {
        self.installed.contains(&role)
    }

    /// The plan the server was last started with.
    pub fn started_server(&self) -> Option<&ServerPlan> {
        self.server.as_ref()
    }

    /// The plan the agent was last started with.
    pub fn started_agent(&self) -> Option<&AgentPlan> {
        self.agent.as_ref()
    }

    fn require_installed(&self, role: Role, unit: &str) -> Result<(), RuntimeError> {
        if self.is_installed(role) {
            Ok(())
        } else {
            Err(RuntimeError::Unexpected(format!(
                "{unit} is not installed (simulated): install it first"
            )))
        }
    }
}

impl Runtime for SimulatedRuntime {
    fn name(&self) -> &'static str {
        "simulated"
    }

    fn version(&self) -> String {
        self.version.clone()
    }

    fn node_name(&self) -> String {
        self.node_name.clone()
    }

    fn install(&mut self, role: Role) -> Result<(), RuntimeError> {
        if !self.installed.contains(&role) {
            self.installed.push(role);
            self.persist()?;
        }
        Ok(())
    }

    fn start_server(&mut self, plan: &ServerPlan) -> Result<(), RuntimeError> {
        self.require_installed(Role::Server, "k3s")?;
        validate_server_plan(plan)?;
        if plan.cluster_init {
            match &self.artifacts {
                None if secure_token_parts(&plan.token).is_some() => {
                    return Err(RuntimeError::Unexpected(format!(
                        "{SECURE_TOKEN_ON_FIRST_SERVER} (simulated)"
                    )));
                }
                None => {
                    let ca = super::apiserver::pki::new_cluster_ca()?;
                    self.ca = Some(ca.clone());
                    let port = self.ensure_api()?.map_or(API_PORT, |a| a.port());
                    self.artifacts = Some(artifacts::bootstrap_artifacts(&plan.token, &ca, port)?);
                }
                // A restart: like k3s, refuse a token of another cluster (the
                // datastore is encrypted with the first password; a secure
                // token's hash must be this cluster's CA's).
                Some(created) if !plan.token.is_empty() => {
                    let hash = |token| secure_token_parts(token).map(|(hash, _)| hash);
                    let same_password =
                        token_password(&plan.token) == token_password(&created.node_token);
                    let same_ca =
                        hash(&plan.token).is_none_or(|h| Some(h) == hash(&created.node_token));
                    if !(same_password && same_ca) {
                        return Err(RuntimeError::Unexpected(
                            "the cluster was created with another token (simulated k3s \
                             refuses to start)"
                                .into(),
                        ));
                    }
                }
                Some(_) => {}
            }
        } else if let Some(ca) = &plan.cluster_ca {
            self.ca = Some(ca.clone());
        }
        self.server = Some(plan.clone());
        // Saved even when the API cannot listen yet: a restart serves it.
        let served = self.serve_api();
        self.persist()?;
        served
    }

    fn read_artifacts(&mut self) -> Result<BootstrapArtifacts, RuntimeError> {
        match (&self.server, &self.artifacts) {
            (Some(plan), Some(artifacts)) if plan.cluster_init => Ok(artifacts.clone()),
            _ => Err(RuntimeError::Unexpected(
                "no kubeconfig or node token: no server was started with cluster_init \
                 (simulated)"
                    .into(),
            )),
        }
    }

    fn start_agent(&mut self, plan: &AgentPlan) -> Result<(), RuntimeError> {
        self.require_installed(Role::Agent, "k3s-agent")?;
        validate_agent_plan(plan)?;
        self.agent = Some(plan.clone());
        self.persist()
    }

    fn hold_vip(&mut self, vip: &str, generation: u64) -> Result<(), RuntimeError> {
        if vip.trim().is_empty() {
            return Err(RuntimeError::Unexpected(
                "an empty virtual IP cannot be held (simulated)".into(),
            ));
        }
        self.vips.lock().insert(vip.to_owned(), generation);
        Ok(())
    }

    fn release_vip(&mut self, vip: &str) -> Result<(), RuntimeError> {
        self.vips.lock().remove(vip);
        Ok(())
    }

    fn observe_cluster(&mut self, instance_id: &str, nodes: &[ClusterNode]) {
        self.observe(instance_id, nodes);
    }

    fn install_version(
        &mut self,
        role: Role,
        pin: Option<&ModuleVersionPin>,
    ) -> Result<(), RuntimeError> {
        self.install_pinned(role, pin)
    }

    fn cordon(&mut self, _role: Role) -> Result<(), RuntimeError> {
        self.set_cordoned(true)
    }

    fn drain(&mut self, _role: Role, _timeout: Duration) -> Result<(), RuntimeError> {
        self.pace();
        Ok(())
    }

    fn upgrade(&mut self, role: Role, pin: Option<&ModuleVersionPin>) -> Result<(), RuntimeError> {
        self.restarting(true);
        self.pace();
        let done = self.install_pinned(role, pin);
        let version = self.version.clone();
        if let Some(api) = &self.api {
            api.update(|s| s.version = version);
        }
        self.restarting(false);
        done
    }

    fn restamp(&mut self, role: Role, extra_flags: &[String]) -> Result<(), RuntimeError> {
        self.restarting(true);
        let done = self.restamp_flags(role, extra_flags);
        self.restarting(false);
        done
    }

    fn wait_ready(&mut self, _role: Role, timeout: Duration) -> Result<(), RuntimeError> {
        self.check_ready(timeout)
    }

    fn uncordon(&mut self, _role: Role) -> Result<(), RuntimeError> {
        self.set_cordoned(false)
    }

    fn adopt_token(
        &mut self,
        role: Role,
        old: &str,
        new: &str,
        rotate: bool,
    ) -> Result<(), RuntimeError> {
        self.take_token(role, old, new, rotate)
    }
}
