//! What the agent remembers across restarts (`<state-dir>/state.json`,
//! mode 0600 because it holds the join token): who it is, what it runs,
//! how far the handshake got, and which virtual IPs it holds at which
//! fencing generation. A restart with the same state dir is the same
//! instance and resumes where it stopped.

use powernode_events::payloads::k3s::K3sModule;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// How far the agent got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Not enrolled yet.
    #[default]
    New,
    /// Enrolled; waiting for a k3s module assignment.
    Enrolled,
    /// k3s installed (`system.k3s.runtime.installing` reported).
    Installed,
    /// Bootstrap server: the cluster was created; `ready` not yet accepted.
    Bootstrapped,
    /// Joined a cluster with a granted token; `ready` not yet accepted.
    Joined,
    /// `ready` accepted.
    Ready,
}

/// The module the agent runs, fixed when the process starts (a change of
/// `target_cluster_id` is applied only after a restart).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Assignment id.
    pub assignment_id: String,
    /// `k3s-server` or `k3s-agent`.
    pub module: K3sModule,
    /// The cluster to join; `None` on a bootstrap server (or "most recent active").
    pub target_cluster_id: Option<String>,
    /// The catalog version to install (the assignment's pin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<powernode_protocol::ModuleVersionPin>,
}

/// The persisted state.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct AgentState {
    /// Instance id, once enrolled.
    pub instance_id: Option<String>,
    /// Account id, once enrolled.
    pub account_id: Option<String>,
    /// The node's hostname as the platform knows it.
    pub hostname: Option<String>,
    /// What it runs.
    pub plan: Option<Plan>,
    /// Handshake progress.
    pub phase: Phase,
    /// The catalog version installed (a pin, or what an upgrade put on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_version: Option<powernode_protocol::ModuleVersionPin>,
    /// The cluster it created or joined.
    pub cluster_id: Option<String>,
    /// That cluster's API endpoint.
    pub api_endpoint: Option<String>,
    /// The cluster token it started k3s with (secret).
    pub token: Option<String>,
    /// `sha256:<hex>` of `token`.
    pub token_fingerprint: Option<String>,
    /// The last refusal the platform gave, until the next step succeeds.
    pub last_rejection: Option<String>,
    /// Per virtual IP id: the newest fencing generation seen and what is
    /// held (absent in state files written before VIP failover).
    #[serde(default)]
    pub vips: BTreeMap<String, VipState>,
    /// The WireGuard key and endpoint the platform last accepted (absent
    /// until registered, and in state files written before the data plane).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard: Option<RegisteredKey>,
}

/// A WireGuard public key and underlay endpoint the platform accepted
/// (`system.sdwan.wireguard_key.registered`); registered again when either
/// changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisteredKey {
    /// Base64 of the x25519 public key.
    pub public_key: String,
    /// Underlay `address:port`.
    pub endpoint: String,
}

/// What the agent knows of one virtual IP it is (or was) a member of.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipState {
    /// The address (as the platform names it, e.g. `fd00:abcd:1::100`).
    pub vip: String,
    /// The newest generation any heartbeat reply named; a reply with an
    /// older one is stale and ignored.
    pub seen_generation: u64,
    /// The generation the agent holds the address at, if it holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_generation: Option<u64>,
}

impl std::fmt::Debug for AgentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentState")
            .field("instance_id", &self.instance_id)
            .field("account_id", &self.account_id)
            .field("plan", &self.plan)
            .field("phase", &self.phase)
            .field("cluster_id", &self.cluster_id)
            .field("api_endpoint", &self.api_endpoint)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("last_rejection", &self.last_rejection)
            .field("vips", &self.vips)
            .field("wireguard", &self.wireguard)
            .finish()
    }
}

/// Where the state lives: a file, or memory only (in-process simulated agents).
#[derive(Debug, Clone)]
pub struct StateStore {
    path: Option<PathBuf>,
}

impl StateStore {
    /// `<dir>/state.json`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            path: Some(dir.join("state.json")),
        }
    }

    /// `<state-dir>/<name>` (none in memory).
    pub fn sibling(&self, name: &str) -> Option<PathBuf> {
        Some(self.path.as_ref()?.parent()?.join(name))
    }

    /// Nothing persisted.
    pub fn memory() -> Self {
        Self { path: None }
    }

    /// Loads the state (default when there is none yet).
    pub fn load(&self) -> std::io::Result<AgentState> {
        let Some(path) = &self.path else {
            return Ok(AgentState::default());
        };
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AgentState::default()),
            Err(e) => Err(e),
        }
    }

    /// Saves atomically (temp file + rename), mode 0600.
    pub fn save(&self, state: &AgentState) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(state).expect("state serializes"))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    }
}
