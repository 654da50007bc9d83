//! The skills timer, beside the consumer: every tick it decides every
//! execution still at work from the service's projection, as the consumer
//! would — a running step past the step timeout fails; a decision a crash
//! or a lost race left undone is made again (the same ids, so what did
//! land is a duplicate). A tick decides on the state it reads, guarded like
//! the consumer's decisions.

use super::perform::perform_all;
use super::rules::{decide_execution, Context, Decision};
use super::SkillsConfig;
use crate::services::failover::promote::PendingPromotion;
use chrono::{DateTime, Utc};
use powernode_log::SharedLog;
use powernode_projections::FleetState;
use powernode_runtime::Shared;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// What every execution at work needs at `now`, decided on `state` (which
/// has applied the log through `seen_seq`).
pub fn decide_all(
    state: &FleetState,
    seen_seq: u64,
    now: DateTime<Utc>,
    config: &SkillsConfig,
) -> (Vec<Decision>, Vec<PendingPromotion>) {
    let mut decisions = Vec::new();
    let mut promotions = Vec::new();
    for (account, acct) in state.accounts() {
        let ctx = Context {
            state,
            account,
            seen_seq,
            now,
            cause: None,
            config,
        };
        for exec in acct.executions_at_work() {
            let decided = decide_execution(&ctx, exec);
            decisions.extend(decided.execution);
            promotions.extend(decided.promotions);
        }
    }
    (decisions, promotions)
}

/// Runs the timer until `shutdown`, reading the time from `clock`.
pub async fn run_timer(
    log: SharedLog,
    nats: Option<async_nats::Client>,
    shared: Shared<FleetState>,
    config: SkillsConfig,
    clock: impl Fn() -> DateTime<Utc> + Send + 'static,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(config.tick());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (decisions, promotions) = {
            let state = shared.state.read().await;
            decide_all(&state, shared.applied(), clock(), &config)
        };
        if decisions.is_empty() && promotions.is_empty() {
            continue;
        }
        let (_, _, error) = perform_all(log.as_ref(), nats.as_ref(), decisions, promotions).await;
        if let Some(e) = error {
            warn!(error = %e, "skills timer: could not record decisions; the next tick tries again");
        }
    }
}
