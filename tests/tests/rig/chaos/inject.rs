//! Injecting a fault and healing it: `docker kill -s KILL`, `docker stop`,
//! `docker network disconnect`/`connect --ip`, and a stream leader's
//! step-down through the JetStream API. The containers down or cut off
//! right now are in [`World::down`], which the approver and the checks read.

use super::schedule::{Fault, Kind, Targets};
use crate::support::Rig;
use anyhow::{ensure, Context as _};
use powernode_log::jetstream::DEFAULT_STREAM;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The rig's containers by role, from `fleet.json`.
#[derive(Debug, Clone)]
pub struct World {
    /// Service replica → container.
    pub services: BTreeMap<String, String>,
    /// NATS node (`nats-1`) → container.
    pub nats: BTreeMap<String, String>,
    /// Agent slot → container.
    pub agents: BTreeMap<String, String>,
    /// The rig's Docker network.
    pub network: String,
    /// Containers down or cut off right now.
    pub down: Arc<Mutex<HashSet<String>>>,
}

impl World {
    /// The world `rig`'s fleet describes.
    pub fn of(rig: &Rig) -> anyhow::Result<Self> {
        let map = |key: &str| -> anyhow::Result<BTreeMap<String, String>> {
            Ok(rig.fleet[key]
                .as_object()
                .with_context(|| format!("fleet.{key}"))?
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect())
        };
        Ok(Self {
            services: map("service_containers")?,
            nats: map("nats_containers")?,
            agents: rig
                .agents
                .iter()
                .map(|(slot, a)| (slot.clone(), a.container.clone()))
                .collect(),
            network: rig.fleet["network"]
                .as_str()
                .context("fleet.network")?
                .to_string(),
            down: Arc::default(),
        })
    }

    /// The fault targets, in a fixed order.
    pub fn targets(&self) -> Targets {
        Targets {
            services: self.services.keys().cloned().collect(),
            agents: self.agents.keys().cloned().collect(),
            nats: self.nats.keys().cloned().collect(),
            streams: vec![
                DEFAULT_STREAM.to_string(),
                format!(
                    "KV_{}",
                    powernode_server::secrets::jetstream::DEFAULT_BUCKET
                ),
            ],
        }
    }

    /// The container a fault aims at (none for a step-down).
    pub fn container(&self, fault: &Fault) -> Option<String> {
        match fault.kind {
            Kind::KillService | Kind::PartitionService => self.services.get(&fault.target),
            Kind::KillAgent | Kind::PartitionAgent => self.agents.get(&fault.target),
            Kind::KillNats | Kind::StopNats => self.nats.get(&fault.target),
            Kind::LeaderStepdown => None,
        }
        .cloned()
    }

    /// Whether the container runs and is on the network (not cut off).
    pub fn live(&self, rig: &Rig, container: &str) -> bool {
        !self.down.lock().expect("down lock").contains(container)
            && rig.running(container).unwrap_or(false)
    }

    fn mark(&self, container: &str, down: bool) {
        let mut set = self.down.lock().expect("down lock");
        if down {
            set.insert(container.to_string());
        } else {
            set.remove(container);
        }
    }
}

/// What injecting did.
#[derive(Debug, Clone)]
pub struct Injected {
    /// When the fault took effect.
    pub at: Instant,
    /// The container hit, if any.
    pub container: Option<String>,
    /// For a partition: the address to reconnect with.
    address: Option<String>,
    /// What happened, for the report (e.g. the old and new leader).
    pub detail: String,
}

/// Injects the fault.
pub async fn inject(rig: &Rig, world: &World, fault: &Fault) -> anyhow::Result<Injected> {
    let container = world.container(fault);
    let mut address = None;
    let detail = match fault.kind {
        Kind::KillService | Kind::KillAgent | Kind::KillNats => {
            let c = container.as_deref().context("no container")?;
            world.mark(c, true);
            rig.docker(&["kill", "-s", "KILL", c])?;
            format!("SIGKILL {c}")
        }
        Kind::StopNats => {
            let c = container.as_deref().context("no container")?;
            world.mark(c, true);
            rig.docker(&["stop", "-t", "5", c])?;
            format!("docker stop {c}")
        }
        Kind::PartitionAgent | Kind::PartitionService => {
            let c = container.as_deref().context("no container")?;
            let ip = rig.docker(&[
                "inspect",
                "-f",
                &format!(
                    "{{{{(index .NetworkSettings.Networks \"{}\").IPAddress}}}}",
                    world.network
                ),
                c,
            ])?;
            ensure!(!ip.is_empty(), "{c} has no address on {}", world.network);
            world.mark(c, true);
            rig.docker(&["network", "disconnect", &world.network, c])?;
            address = Some(ip.clone());
            format!("{c} ({ip}) cut off {}", world.network)
        }
        Kind::LeaderStepdown => stepdown(rig, &fault.target).await?,
    };
    Ok(Injected {
        at: Instant::now(),
        container,
        address,
        detail,
    })
}

/// Heals the fault: starts the container again or reconnects it.
pub fn heal(rig: &Rig, world: &World, fault: &Fault, injected: &Injected) -> anyhow::Result<()> {
    let Some(c) = injected.container.as_deref() else {
        return Ok(());
    };
    match fault.kind {
        Kind::PartitionAgent | Kind::PartitionService => {
            let ip = injected.address.as_deref().context("no address")?;
            rig.docker(&["network", "connect", "--ip", ip, &world.network, c])?;
        }
        _ => {
            rig.docker(&["start", c])?;
        }
    }
    world.mark(c, false);
    Ok(())
}

/// Asks the stream's leader to step down; answers the old and new leader.
async fn stepdown(rig: &Rig, stream: &str) -> anyhow::Result<String> {
    let before = rig.cluster_of_stream(stream).await?;
    let old = before["leader"].as_str().unwrap_or("?").to_string();
    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        rig.nats.request(
            format!("$JS.API.STREAM.LEADER.STEPDOWN.{stream}"),
            bytes::Bytes::new(),
        ),
    )
    .await
    .context("the step-down request timed out")??;
    let answer: Value = serde_json::from_slice(&reply.payload)
        .with_context(|| format!("step-down answer {:?}", reply.payload))?;
    ensure!(
        answer["success"] == true,
        "{stream} leader step-down refused: {answer}"
    );
    Ok(format!("{stream} leader {old} stepped down"))
}
