//! In-process simulated agents (`powernode up --simulate-agents`): one
//! [`powernode_agent::agent::Agent`] with the simulated runtime for every
//! instance provisioned through this API, talking to the intake by direct
//! call. Each keeps its identity and state under
//! `<data-dir>/sim-agents/<instance>`, so a restart resumes them.
//!
//! The simulator and every agent are tasks of the node ([`Spawner`]): they
//! stop with it, and a panic in one stops the node.

use powernode_agent::agent::Agent;
use powernode_agent::driver::simulated::{SimulatedRuntime, UpgradeBehaviour};
use powernode_agent::identity::Identity;
use powernode_agent::state::StateStore;
use powernode_agent::wireguard::simulated::SimulatedRunner;
use powernode_agent::wireguard::{DataPlane, WireguardKey};
use powernode_runtime::supervisor::Spawner;
use powernode_server::api::Provisioned;
use powernode_server::intake::Intake;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{info, warn};

/// The k3s version simulated agents report.
pub const SIMULATED_K3S_VERSION: &str = "v1.30.5+k3s1";

/// How the simulated nodes' upgrades behave: how long one takes, and a
/// catalog version whose upgrades never get ready (for tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimUpgrades {
    /// How long a whole node upgrade takes.
    pub node_upgrade: Duration,
    /// Upgrading to this catalog version fails (the node rolls back).
    pub fail_upgrade_to: Option<String>,
}

impl Default for SimUpgrades {
    fn default() -> Self {
        Self {
            node_upgrade: Duration::from_millis(300),
            fail_upgrade_to: None,
        }
    }
}

/// The simulator's upgrade behaviour (one simulator per process: the
/// node's start hook is a plain function, so it is read from here).
static UPGRADES: std::sync::Mutex<Option<SimUpgrades>> = std::sync::Mutex::new(None);

fn upgrades() -> SimUpgrades {
    UPGRADES
        .lock()
        .map(|u| u.clone().unwrap_or_default())
        .unwrap_or_default()
}

/// The node option that runs this simulator with `interval` heartbeats.
pub fn agents(interval: Duration) -> powernode_server::node::SimulatedAgents {
    powernode_server::node::SimulatedAgents { interval, start }
}

/// [`agents`] whose nodes upgrade as `upgrades` says.
pub fn agents_with(
    interval: Duration,
    upgrades: SimUpgrades,
) -> powernode_server::node::SimulatedAgents {
    if let Ok(mut u) = UPGRADES.lock() {
        *u = Some(upgrades);
    }
    agents(interval)
}

/// Starts the simulator under `tasks`: resumes the agents under `dir`, and
/// answers a sender that starts one for every newly provisioned instance.
pub fn start(
    intake: Intake,
    dir: PathBuf,
    interval: Duration,
    tasks: Spawner,
) -> mpsc::UnboundedSender<Provisioned> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Provisioned>();
    let spawner = tasks.clone();
    // Runs as long as the node: the sender lives in the API's state, which
    // the HTTP server drops only after shutdown.
    tasks.spawn("simulated agents", async move {
        let shutdown = spawner.shutdown().clone();
        for existing in existing_agents(&dir) {
            let hostname = existing.clone();
            spawn_agent(&spawner, &intake, &dir, &existing, hostname, None, interval);
        }
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                next = rx.recv() => match next {
                    Some(p) => spawn_agent(&spawner, &intake, &dir, &p.instance_id, p.hostname, Some(p.credential), interval),
                    None => return,
                },
            }
        }
    });
    tx
}

fn existing_agents(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.path().join("state.json").exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect()
}

/// A simulated agent's data plane: a real WireGuard key (kept under its
/// home), an underlay endpoint on loopback with a port derived from the
/// instance id, and a simulated kernel (nothing touches the host). Configs
/// are applied and reported like on a real node; VIPs are not probed
/// (nothing can reach them), so the data-path check stays quiet.
fn simulated_data_plane(home: &Path, instance_id: &str) -> anyhow::Result<DataPlane> {
    let key = WireguardKey::load_or_create(home)?;
    let port = 20_000
        + (instance_id
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
            % 40_000) as u16;
    Ok(DataPlane::new(
        key,
        format!("127.0.0.1:{port}"),
        Box::new(SimulatedRunner::new(home.join("wireguard"))),
    ))
}

/// Starts one agent (a task that may end: an agent that cannot start gives
/// up, logged, without stopping the node).
fn spawn_agent(
    tasks: &Spawner,
    intake: &Intake,
    dir: &Path,
    instance_id: &str,
    hostname: String,
    credential: Option<String>,
    interval: Duration,
) {
    let home = dir.join(instance_id);
    let intake = intake.clone();
    let shutdown = tasks.shutdown().clone();
    let instance_id = instance_id.to_string();
    tasks.spawn_transient(format!("simulated agent {instance_id}"), async move {
        let store = StateStore::in_dir(&home);
        let hostname = store
            .load()
            .ok()
            .and_then(|s| s.hostname)
            .unwrap_or(hostname);
        // The intake may still be catching up right after a start: retry.
        let mut attempts = 0;
        let agent = loop {
            let identity = match Identity::load_or_create(&home.join("identity.key")) {
                Ok(i) => i,
                Err(e) => {
                    warn!(instance = %instance_id, error = %e, "simulated agent: no identity");
                    return;
                }
            };
            let upgrades = upgrades();
            // Upgrade orders are run by the agent itself
            // (`powernode_agent::agent::upgrade`); the runtime only paces
            // them and fails them where told.
            let runtime = Box::new(
                SimulatedRuntime::new(hostname.clone(), SIMULATED_K3S_VERSION.into())
                    .with_upgrade_behaviour(UpgradeBehaviour {
                        node_upgrade: upgrades.node_upgrade,
                        fail_upgrade_to: upgrades.fail_upgrade_to,
                        fail_rollback: false,
                    }),
            );
            let started = tokio::select! {
                // Starting may wait for the platform's decisions, which a
                // stopping node no longer makes.
                _ = shutdown.cancelled() => return,
                started = Agent::start(
                    identity,
                    Arc::new(intake.clone()),
                    runtime,
                    store.clone(),
                    credential.clone(),
                ) => started,
            };
            match started {
                Ok(a) => match simulated_data_plane(&home, &instance_id) {
                    Ok(plane) => break a.with_data_plane(plane, Duration::ZERO),
                    Err(e) => {
                        warn!(instance = %instance_id, error = %e, "simulated agent: no WireGuard key; running without a data plane");
                        break a;
                    }
                },
                Err(e) if attempts < 20 => {
                    attempts += 1;
                    warn!(instance = %instance_id, error = %e, "simulated agent could not start; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                }
                Err(e) => {
                    warn!(instance = %instance_id, error = %e, "simulated agent gave up");
                    return;
                }
            }
        };
        info!(instance = %instance_id, "simulated agent running");
        agent.run(interval, shutdown).await;
    });
}
