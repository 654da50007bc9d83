//! What a simulated node remembers across restarts, like k3s's data dir:
//! `<state-dir>/simulated-k3s.json` (mode 0600: it holds the cluster CA's
//! key, the join token and the admin kubeconfig) with what was installed,
//! the server or agent plan last started, the bootstrap artefacts, the
//! cluster CA and what the platform last said of the cluster. A driver
//! made from the same dir ([`SimulatedRuntime::with_state_dir`]) is the same
//! node: a started server serves its API again (a new certificate from the
//! same CA), a restart of the bootstrap keeps its CA and node token. The
//! virtual IPs held are not saved: the agent applies its confirmed holds
//! through the driver again after a restart.

use super::SimulatedRuntime;
use crate::driver::{AgentPlan, BootstrapArtifacts, ClusterCa, ClusterNode, Role, RuntimeError};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The file name under the state dir.
pub const STATE_FILE: &str = "simulated-k3s.json";

/// The saved node (secrets inside; never logged).
#[derive(Default, Serialize, Deserialize)]
#[serde(default)]
struct SavedNode {
    installed: Vec<Role>,
    server: Option<crate::driver::ServerPlan>,
    agent: Option<AgentPlan>,
    artifacts: Option<BootstrapArtifacts>,
    ca: Option<ClusterCa>,
    instance_id: Option<String>,
    nodes: Vec<ClusterNode>,
    /// The release running (absent in files saved before it was kept).
    version: Option<String>,
    module_version_id: Option<String>,
    cordoned: bool,
    token_rotations: u32,
    /// A worker's platform-stamped flags.
    #[serde(default)]
    agent_flags: Vec<String>,
}

fn io_error(path: &Path, source: std::io::Error) -> RuntimeError {
    RuntimeError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Reads the saved node, `None` when there is none yet.
fn load(path: &Path) -> Result<Option<SavedNode>, RuntimeError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            RuntimeError::Unexpected(format!(
                "{}: not a saved simulated k3s node: {e}",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path, e)),
    }
}

/// Writes atomically (temp file + rename), mode 0600.
fn save(path: &Path, node: &SavedNode) -> Result<(), RuntimeError> {
    let bytes = serde_json::to_vec_pretty(node).map_err(|e| {
        RuntimeError::Unexpected(format!("cannot encode the simulated k3s node: {e}"))
    })?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    }
    let tmp = path.with_extension("json.tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp).map_err(|e| io_error(&tmp, e))?;
    f.write_all(&bytes).map_err(|e| io_error(&tmp, e))?;
    f.sync_all().map_err(|e| io_error(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_error(path, e))
}

impl SimulatedRuntime {
    /// Remembers this node under `dir` ([`STATE_FILE`]) and takes back what
    /// a previous run there saved. A server that was started serves its
    /// API again at once when a listen address was set (call
    /// [`SimulatedRuntime::with_api_listen`] first, inside a tokio
    /// runtime); if it cannot yet (the port still taken), the next
    /// [`crate::driver::Runtime::observe_cluster`] tries again. Fails only
    /// when the saved file cannot be read.
    pub fn with_state_dir(mut self, dir: &Path) -> Result<Self, RuntimeError> {
        let path = dir.join(STATE_FILE);
        if let Some(saved) = load(&path)? {
            self.installed = saved.installed;
            self.server = saved.server;
            self.agent = saved.agent;
            self.artifacts = saved.artifacts;
            self.ca = saved.ca;
            self.instance_id = saved.instance_id;
            self.nodes = saved.nodes;
            if let Some(version) = saved.version {
                self.version = version;
            }
            self.module_version_id = saved.module_version_id;
            self.cordoned = saved.cordoned;
            self.token_rotations = saved.token_rotations;
            self.agent_flags = saved.agent_flags;
            let me = self.instance_id.as_deref();
            if let Some(listed) = self
                .nodes
                .iter()
                .find(|n| Some(n.instance_id.as_str()) == me)
            {
                self.node_name.clone_from(&listed.name);
            }
            tracing::info!(
                node = %self.node_name,
                path = %path.display(),
                server = self.server.is_some(),
                agent = self.agent.is_some(),
                "simulated k3s node restored"
            );
        }
        self.state_file = Some(path);
        self.resume_api();
        Ok(self)
    }

    /// Where the node is saved, if it is.
    pub fn state_file(&self) -> Option<&PathBuf> {
        self.state_file.as_ref()
    }

    /// Saves the node (nothing without a state dir).
    pub(super) fn persist(&self) -> Result<(), RuntimeError> {
        let Some(path) = &self.state_file else {
            return Ok(());
        };
        save(
            path,
            &SavedNode {
                installed: self.installed.clone(),
                server: self.server.clone(),
                agent: self.agent.clone(),
                artifacts: self.artifacts.clone(),
                ca: self.ca.clone(),
                instance_id: self.instance_id.clone(),
                nodes: self.nodes.clone(),
                version: Some(self.version.clone()),
                module_version_id: self.module_version_id.clone(),
                cordoned: self.cordoned,
                token_rotations: self.token_rotations,
                agent_flags: self.agent_flags.clone(),
            },
        )
    }

    /// A started server whose API is not listening (restored, or its bind
    /// failed) starts listening; a failure is logged and tried again later.
    pub(super) fn resume_api(&mut self) {
        if self.server.is_none() || self.api_listen.is_none() || self.api.is_some() {
            return;
        }
        // `serve_api` makes a CA of its own when none was handed over: saved.
        match self.serve_api().and_then(|()| self.persist()) {
            Ok(()) => tracing::info!(
                node = %self.node_name,
                listen = ?self.api_address(),
                "simulated k3s API serving again"
            ),
            Err(e) => tracing::warn!(
                node = %self.node_name,
                error = %e,
                "the started simulated k3s server cannot serve its API yet; trying again on the next heartbeat"
            ),
        }
    }
}
