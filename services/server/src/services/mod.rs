//! The services. Each consumes the log with its own durable cursor and
//! checkpoint, and can run alone (`powernode serve <service>`) or with the
//! others in one process (`powernode up`).
//!
//! Every service keeps the fleet projection and adds its decisions as a
//! [`powernode_runtime::Reactor`]: [`provisioner`] (handshakes and clusters),
//! [`sdwan`] (VIPs; and, on a timer, [`grants`] expiry), [`failover`]
//! (proposals, approvals, promotions), [`skills`] (skill executions:
//! steps started batch by batch, agents' reports made outcomes; and, on a
//! timer, step timeouts). The [`sensor`] keeps the projection
//! and watches VIP holders on a timer.
//! Sensor and failover hear agents' heartbeats ([`crate::liveness`]).

pub mod failover;
#[cfg(test)]
pub(crate) mod given;
pub mod grants;
pub mod partitions;
pub mod provisioner;
pub mod sdwan;
pub mod sensor;
pub mod skills;

use chrono::{DateTime, Utc};
use powernode_events::{Actor, Envelope, EventPayload};
use powernode_log::SharedLog;
use powernode_projections::FleetState;
use powernode_runtime::checkpoint::CheckpointStore;
use powernode_runtime::{
    derived_event_id, run_consumer, ConsumerConfig, Decisions, ProjectOnly, RuntimeError, Shared,
};
use std::future::Future;
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
    /// Skill executions: rolling upgrades, cluster provisioning, re-stamps.
    Skills,
}

impl ServiceName {
    /// Every service, in start order.
    pub const ALL: [ServiceName; 6] = [
        Self::Provisioner,
        Self::Sdwan,
        Self::Sensor,
        Self::Failover,
        Self::Skills,
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
            Self::Skills => "skills",
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
    /// When agents were last heard (shared with this process's intake).
    pub liveness: crate::liveness::SharedLiveness,
    /// Silence threshold, failover policy and damping.
    pub failover: failover::FailoverConfig,
    /// Skill executions: step timeout and timer tick.
    pub skills: skills::SkillsConfig,
    /// Replica name: several replicas of one service each need their own
    /// durable cursor and checkpoint (`<service>-<replica>`), or they would
    /// split the log between them. `None`: the service name alone.
    pub replica: Option<String>,
    /// Where this process's consumers report their status.
    pub status: crate::status::SharedBoard,
    /// Whether this replica splits the accounts with the service's other
    /// replicas ([`partitions`]).
    pub partitions: partitions::PartitionArgs,
}

/// Runs the consumer of one service over `shared` until shutdown.
pub async fn run_service(
    name: ServiceName,
    ctx: ServiceContext,
    shared: Shared<FleetState>,
) -> Result<(), RuntimeError> {
    let mut config = ConsumerConfig::new(match &ctx.replica {
        Some(r) => format!("{}-{r}", name.as_str()),
        None => name.as_str().to_string(),
    });
    config.status = ctx.status.track(name.as_str(), &config.name);
    // Partitioned: the lease keeper runs beside the consumer, like a timer.
    let keeper = partitions::prepare(name, &ctx, &mut config).await?;
    let (log, cps, stop) = (ctx.log, ctx.checkpoints, ctx.shutdown);
    let local = stop.child_token();
    let leases = partitions::keep(keeper, local.clone());
    match name {
        ServiceName::Provisioner => {
            let name = config.name.clone();
            let reactor = provisioner::Provisioner;
            let consumer = run_consumer(log, cps, config, shared, reactor, local.clone());
            with_timer(&name, local, consumer, leases).await
        }
        ServiceName::Sdwan => {
            // Access grant expiry runs next to the consumer.
            let expiry = grants::run_expiry(log.clone(), shared.clone(), Utc::now, local.clone());
            let name = config.name.clone();
            let reactor = sdwan::Sdwan::new(log.nats_client().map(|(c, _)| c));
            let consumer = run_consumer(log, cps, config, shared, reactor, local.clone());
            with_timer(&name, local, consumer, both(expiry, leases)).await
        }
        ServiceName::Sensor => {
            // The detector and the consumer stop together.
            let detector = sensor::run_detector(
                log.clone(),
                shared.clone(),
                ctx.liveness,
                ctx.failover,
                Utc::now,
                local.clone(),
            );
            let name = config.name.clone();
            let consumer = run_consumer(log, cps, config, shared, ProjectOnly, local.clone());
            with_timer(&name, local, consumer, both(detector, leases)).await
        }
        ServiceName::Failover => {
            let expiry = failover::run_expiry(log.clone(), shared.clone(), Utc::now, local.clone());
            let reactor = failover::Failover::new(log.clone(), ctx.liveness, ctx.failover);
            let name = config.name.clone();
            let consumer = run_consumer(log, cps, config, shared, reactor, local.clone());
            with_timer(&name, local, consumer, both(expiry, leases)).await
        }
        ServiceName::Skills => {
            let nats = log.nats_client().map(|(c, _)| c);
            let timer = skills::run_timer(
                log.clone(),
                nats.clone(),
                shared.clone(),
                ctx.skills.clone(),
                Utc::now,
                local.clone(),
            );
            let reactor = skills::Skills::new(log.clone(), nats, ctx.skills);
            let name = config.name.clone();
            let consumer = run_consumer(log, cps, config, shared, reactor, local.clone());
            with_timer(&name, local, consumer, both(timer, leases)).await
        }
        ServiceName::Api => run_consumer(log, cps, config, shared, ProjectOnly, stop).await,
    }
}

/// Two timers run as one (both run until the service's shutdown).
async fn both(a: impl Future<Output = ()>, b: impl Future<Output = ()>) {
    tokio::join!(a, b);
}

/// Runs a service's consumer together with the timer it owns (the sensor's
/// detector, failover's expiry), both stopped by `local`: the timer is
/// joined when the consumer ends, and a timer that panics — or ends before
/// shutdown — stops the consumer and is the service's error, not a silent
/// loss.
async fn with_timer(
    name: &str,
    local: CancellationToken,
    consumer: impl Future<Output = Result<(), RuntimeError>>,
    timer: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RuntimeError> {
    let failed = |reason: String| RuntimeError::Fatal {
        name: name.to_string(),
        reason,
    };
    let mut timer = tokio::spawn(timer);
    tokio::pin!(consumer);
    tokio::select! {
        result = &mut consumer => {
            local.cancel();
            let joined = timer.await;
            result?;
            joined.map_err(|e| failed(format!("timer failed: {e}")))
        }
        joined = &mut timer => {
            let early = !local.is_cancelled();
            local.cancel();
            let result = consumer.await;
            let why = match joined {
                Err(e) => format!("timer failed: {e}"),
                Ok(()) if early => "timer stopped before shutdown".to_string(),
                Ok(()) => return result,
            };
            if let Err(e) = result {
                tracing::error!(error = %e, "consumer stopped with an error after its timer failed");
            }
            Err(failed(why))
        }
    }
}

/// Queues a decision caused by `cause`, with an id derived from the cause
/// and the decision's kind (so handling the cause again after a crash is a
/// duplicate, not a second fact), decided at `now`.
pub(crate) fn emit<E>(
    out: &mut Decisions<E>,
    cause: &Envelope,
    now: DateTime<Utc>,
    service: &str,
    payload: EventPayload,
) {
    let mut event =
        Envelope::new(cause.account_id.clone(), Actor::service(service), payload).caused_by(cause);
    event.id = derived_event_id(cause.id, event.kind());
    event.occurred_at = now;
    out.append(event);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A consumer that runs until its token is cancelled.
    async fn until_stopped(local: CancellationToken) -> Result<(), RuntimeError> {
        local.cancelled().await;
        Ok(())
    }

    #[tokio::test]
    async fn a_timer_that_panics_stops_the_service_with_an_error() {
        let local = CancellationToken::new();
        let consumer = until_stopped(local.clone());
        let result = with_timer("svc", local, consumer, async { panic!("boom") }).await;
        let err = result.expect_err("a panicking timer is an error");
        assert!(err.to_string().contains("timer failed"), "{err}");
    }

    #[tokio::test]
    async fn a_timer_that_ends_before_shutdown_stops_the_service_with_an_error() {
        let local = CancellationToken::new();
        let consumer = until_stopped(local.clone());
        let err = with_timer("svc", local, consumer, async {})
            .await
            .expect_err("a timer ending early is an error");
        assert!(err.to_string().contains("before shutdown"), "{err}");
    }

    #[tokio::test]
    async fn on_shutdown_the_timer_is_joined() {
        let stop = CancellationToken::new();
        let local = stop.child_token();
        let finished = Arc::new(AtomicBool::new(false));
        let timer = {
            let (local, finished) = (local.clone(), finished.clone());
            async move {
                local.cancelled().await;
                tokio::task::yield_now().await;
                finished.store(true, Ordering::SeqCst);
            }
        };
        let consumer = until_stopped(local.clone());
        let service = tokio::spawn(with_timer("svc", local, consumer, timer));
        stop.cancel();
        service.await.unwrap().unwrap();
        assert!(finished.load(Ordering::SeqCst), "the timer was not joined");
    }

    #[tokio::test]
    async fn a_failing_consumer_stops_its_timer_and_is_the_error() {
        let local = CancellationToken::new();
        let timer = {
            let local = local.clone();
            async move { local.cancelled().await }
        };
        let consumer = async {
            Err(RuntimeError::Fatal {
                name: "svc".into(),
                reason: "broken".into(),
            })
        };
        let err = with_timer("svc", local.clone(), consumer, timer)
            .await
            .expect_err("the consumer's error");
        assert!(err.to_string().contains("broken"), "{err}");
        assert!(local.is_cancelled());
    }
}
