//! The failover reactor: [`Rules`] decide; what they decide that needs
//! the log — answers to silences guarded by [`decide_once`], promotions
//! appended together at the end of a batch ([`promote::promote_all`]) — is
//! performed here, once the runtime has released the projection's lock.

use super::config::FailoverConfig;
use super::decide::{decide_once, Decided, Effect, Rules};
use super::promote::{self, PendingPromotion};
use crate::liveness::SharedLiveness;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use powernode_events::Envelope;
use powernode_log::SharedLog;
use powernode_projections::FleetState;
use powernode_runtime::{Decisions, Outbox, ReactError, Reactor};
use tracing::info;

/// The failover reactor: [`Rules`] and the log and NATS client their
/// effects need.
pub struct Failover {
    rules: Rules,
    log: SharedLog,
    nats: Option<async_nats::Client>,
    /// Promotions decided in this batch, appended together at its end.
    pending: Vec<PendingPromotion>,
}

impl Failover {
    /// A failover reactor appending to `log`.
    pub fn new(log: SharedLog, liveness: SharedLiveness, config: FailoverConfig) -> Self {
        let nats = log.nats_client().map(|(c, _)| c);
        Self {
            rules: Rules { liveness, config },
            log,
            nats,
            pending: Vec::new(),
        }
    }

    /// Appends a decision about a silence unless another decision about
    /// the same silence landed first; answers whether this one stands.
    async fn decide_once(&self, seq: u64, decision: &Envelope) -> Result<bool, ReactError> {
        match decide_once(self.log.as_ref(), seq, decision).await? {
            Decided::Landed(_) => Ok(true),
            Decided::Moot(other) => {
                info!(vip = %decision.aggregate.id, %other, "this silence was decided already; not deciding again");
                Ok(false)
            }
        }
    }
}

#[async_trait]
impl Reactor<FleetState> for Failover {
    type Effect = Effect;

    fn decide(
        &mut self,
        state: &FleetState,
        seq: u64,
        event: &Envelope,
        now: DateTime<Utc>,
        out: &mut Decisions<Effect>,
    ) {
        self.rules.decide(state, seq, event, now, out);
    }

    /// Answers to silences are appended one by one, each guarded;
    /// promotions wait for the end of the batch.
    async fn execute(
        &mut self,
        _seq: u64,
        effects: &mut Vec<Effect>,
        out: &mut Outbox,
    ) -> Result<(), ReactError> {
        while let Some(effect) = effects.first() {
            match effect {
                Effect::DecideOnce {
                    seen_seq,
                    decision,
                    then,
                } => {
                    if self.decide_once(*seen_seq, decision).await? {
                        if let Some(then) = then {
                            out.push(Envelope::clone(then));
                        }
                    }
                }
                Effect::Promote(p) => self.pending.push(p.clone()),
            }
            effects.remove(0);
        }
        Ok(())
    }

    async fn end_batch(&mut self) -> Result<(), ReactError> {
        let pending = std::mem::take(&mut self.pending);
        if pending.is_empty() {
            return Ok(());
        }
        let (failed, error) =
            promote::promote_all(self.log.as_ref(), self.nats.as_ref(), pending).await;
        self.pending = failed;
        error.map_or(Ok(()), Err)
    }
}
