//! Performing the rules' decisions: each execution's events appended in
//! order, guarded on the execution's aggregate (the first on the last
//! sequence the decision saw, each next one on where the one before
//! landed), so two replicas — or the consumer and the timer — deciding at
//! once cannot both add a step's outcome or start a step twice: the loser
//! finds the aggregate moved on and drops the rest of its decision, which
//! is made again from the newer state once it is folded.

use super::rules::Decision;
use crate::services::failover::promote::{self, PendingPromotion};
use powernode_events::{AggregateType, EventPayload};
use powernode_log::{EventLog, Expect, LogError};
use powernode_runtime::ReactError;
use tracing::{debug, error, info};

/// Appends `d`'s events (see the module doc) and nudges the agents whose
/// steps started. `Err` only for a log failure worth retrying or fatal.
pub async fn perform(
    log: &dyn EventLog,
    nats: Option<&async_nats::Client>,
    d: &Decision,
) -> Result<(), LogError> {
    let mut last = d.seen_last_seq;
    let mut landed = 0;
    let mut first = true;
    for event in &d.events {
        let on_execution = event.aggregate.kind == AggregateType::SkillExecution
            && event.aggregate.id == d.execution_id;
        let expect = match (on_execution, last) {
            (false, _) => Expect::Any,
            (true, 0) => Expect::NoEvents,
            (true, l) => Expect::LastSeq(l),
        };
        let mut appended = log.append(event, expect).await;
        if on_execution && std::mem::take(&mut first) {
            if let Err(LogError::Conflict { .. }) = &appended {
                // A record of the execution the state never folded (refused
                // at admission) would hold every guard back for good: when
                // the aggregate's last record is one the state has applied
                // past, the decision still stands on it.
                let account = &event.account_id;
                if let Some(actual) = log.aggregate_last_seq(account, &event.aggregate).await? {
                    if actual > last && actual <= d.seen_seq {
                        appended = log.append(event, Expect::LastSeq(actual)).await;
                    }
                }
            }
        }
        match appended {
            Ok(a) => {
                if on_execution {
                    last = a.seq;
                }
                landed = landed.max(a.seq);
                if !a.duplicate {
                    log_decision(&d.execution_id, &event.payload, a.seq);
                }
            }
            Err(LogError::Conflict { .. }) => {
                debug!(execution = %d.execution_id, kind = event.kind(), "the execution moved on while deciding; deciding again from the newer state");
                break;
            }
            Err(LogError::IdTaken { id, seq }) => {
                error!(execution = %d.execution_id, event_id = %id, taken_at = seq, kind = event.kind(), "decision not appended: its id is taken by a different record");
                break;
            }
            Err(e) => return Err(e),
        }
    }
    if landed > 0 && !d.nudge.is_empty() {
        let targets: Vec<&str> = d.nudge.iter().map(String::as_str).collect();
        promote::nudge(nats, &targets, landed).await;
    }
    Ok(())
}

fn log_decision(execution: &str, payload: &EventPayload, seq: u64) {
    match payload {
        EventPayload::SkillStepStarted(p) => {
            info!(%execution, step = p.step, instance = %p.instance_id, seq, "step started")
        }
        EventPayload::SkillStepSucceeded(p) => {
            info!(%execution, step = p.step, instance = %p.instance_id, seq, "step succeeded")
        }
        EventPayload::SkillStepFailed(p) => {
            info!(%execution, step = p.step, instance = %p.instance_id, reason = %p.reason, seq, "step failed")
        }
        EventPayload::SkillExecutionCompleted(p) => {
            info!(%execution, succeeded = p.succeeded, failed = p.failed, seq, "execution completed")
        }
        EventPayload::SkillExecutionAborted(p) => {
            info!(%execution, reason = %p.reason, detail = %p.detail, seq, "execution aborted")
        }
        _ => debug!(%execution, kind = payload.kind(), seq, "decision appended"),
    }
}

/// Performs `decisions` (one per execution, concurrently) and
/// `promotions` (each fenced on its VIP); answers what failed, to be tried
/// again, and the error to report for it.
pub async fn perform_all(
    log: &dyn EventLog,
    nats: Option<&async_nats::Client>,
    decisions: Vec<Decision>,
    promotions: Vec<PendingPromotion>,
) -> (Vec<Decision>, Vec<PendingPromotion>, Option<ReactError>) {
    let (results, (failed_promotions, mut error)) = futures::join!(
        futures::future::join_all(decisions.iter().map(|d| perform(log, nats, d))),
        async {
            if promotions.is_empty() {
                (Vec::new(), None)
            } else {
                promote::promote_all(log, nats, promotions).await
            }
        }
    );
    let mut failed = Vec::new();
    for (d, result) in decisions.into_iter().zip(results) {
        if let Err(e) = result {
            let e = ReactError::from(e);
            if matches!(e, ReactError::Fatal(_)) || error.is_none() {
                error = Some(e);
            }
            failed.push(d);
        }
    }
    (failed, failed_promotions, error)
}
