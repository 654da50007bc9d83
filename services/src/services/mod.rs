//! The services. Each consumes the log with its own durable cursor and
//! checkpoint, and can run alone (`powernode serve <service>`) or with the
//! others in one process (`powernode up`).
//!
//! Today every service keeps the fleet projection; the decisions each one
//! makes (provisioner: handshakes and clusters; sdwan: networks and VIPs;
//! sensor: silence; failover: promotions) are added service by service on top
//! of this runtime as [`crate::runtime::Reactor`]s.

use crate::log::SharedLog;
use crate::runtime::{run_consumer, ConsumerConfig, ProjectOnly, RuntimeError, Shared};
use powernode_projections::checkpoint::CheckpointStore;
use powernode_projections::FleetState;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// A service that can be run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ServiceName {
    /// The operator HTTP API and its projection.
    Api,
    /// Handshakes and the cluster lifecycle.
    Provisioner,
    /// Networks, peers and virtual IPs.
    Sdwan,
    /// Heartbeat silence detection.
    Sensor,
    /// VIP failover proposals and promotions.
    Failover,
}

impl ServiceName {
    /// Every service, in start order.
    pub const ALL: [ServiceName; 5] = [
        Self::Provisioner,
        Self::Sdwan,
        Self::Sensor,
        Self::Failover,
        Self::Api,
    ];

    /// The service's name (durable cursor and checkpoint name).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Provisioner => "provisioner",
            Self::Sdwan => "sdwan",
            Self::Sensor => "sensor",
            Self::Failover => "failover",
        }
    }
}

/// What every service needs to run.
#[derive(Clone)]
pub struct ServiceContext {
    /// The event log.
    pub log: SharedLog,
    /// Where checkpoints are kept.
    pub checkpoints: Arc<CheckpointStore>,
    /// Stops everything.
    pub shutdown: CancellationToken,
}

/// Runs the consumer of one service over `shared` until shutdown.
pub async fn run_service(
    name: ServiceName,
    ctx: ServiceContext,
    shared: Shared<FleetState>,
) -> Result<(), RuntimeError> {
    let config = ConsumerConfig::new(name.as_str());
    run_consumer(
        ctx.log,
        ctx.checkpoints,
        config,
        shared,
        ProjectOnly,
        ctx.shutdown,
    )
    .await
}
