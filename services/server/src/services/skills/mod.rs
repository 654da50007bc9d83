//! The skills service: the executor of skill executions (rolling module
//! upgrades, `provision_cluster`, pod-subnet re-stamps).
//!
//! An execution's plan is frozen in `system.skill.execution.started`
//! (appended by the API). From there this service decides, batch by batch:
//! it starts the lowest unfinished batch's steps (moving a VIP off a node
//! to an upgraded server first), turns the agents' signed reports — or
//! their silence past the step timeout, or a provisioned node becoming
//! ready — into each step's outcome, stops the execution when failures in
//! a row reach its limit (no further node is touched), and completes it
//! when every step ran. A paused execution starts nothing; its steps under
//! way still finish.
//!
//! Modules: [`config`] (flags), [`rules`] (what an execution needs next;
//! pure), [`triggers`] (which executions an event wakes), [`perform`]
//! (guarded appends, promotions, nudges), [`timer`] (timeouts, and what a
//! crash or a lost race left undone).

pub mod config;
pub mod perform;
pub mod restamp;
pub mod rules;
pub mod timer;
pub mod triggers;
mod vip;

#[cfg(test)]
mod tests;

pub use config::SkillsConfig;
pub use timer::run_timer;

use crate::services::failover::promote::PendingPromotion;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use powernode_events::{AccountId, Envelope};
use powernode_log::SharedLog;
use powernode_projections::FleetState;
use powernode_runtime::{Decisions, Outbox, ReactError, Reactor};
use rules::{decide_execution, Context, Decision};
use std::collections::BTreeMap;

/// What the skills service decides besides plain appends.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Append an execution's decisions, guarded ([`perform::perform`]).
    Execution(Decision),
    /// Move a VIP off a node before its step (fenced promotion).
    Promote(Box<PendingPromotion>),
}

/// Decides about `event` (folded into `state` at `seq`) at `now`: what
/// every execution it wakes needs next.
pub fn decide(
    state: &FleetState,
    seq: u64,
    event: &Envelope,
    now: DateTime<Utc>,
    config: &SkillsConfig,
    out: &mut Decisions<Effect>,
) {
    if let powernode_events::EventPayload::PodSubnetPrefixSet(p) = &event.payload {
        for start in restamp::starts(state, event, p, now) {
            out.append(start);
        }
    }
    let ctx = Context {
        state,
        account: &event.account_id,
        seen_seq: seq,
        now,
        cause: Some(event),
        config,
    };
    for exec in triggers::executions(state, event) {
        let decided = decide_execution(&ctx, exec);
        if let Some(d) = decided.execution {
            out.effect(Effect::Execution(d));
        }
        for p in decided.promotions {
            out.effect(Effect::Promote(Box::new(p)));
        }
    }
}

/// The skills reactor: the rules, and the log and NATS client their
/// effects need. Decisions are gathered over a batch (the latest per
/// execution and per VIP: made on the newest state) and performed together
/// at its end.
pub struct Skills {
    log: SharedLog,
    nats: Option<async_nats::Client>,
    config: SkillsConfig,
    pending: BTreeMap<(AccountId, String), Decision>,
    promotions: BTreeMap<String, PendingPromotion>,
}

impl Skills {
    /// A skills reactor appending to `log`, nudging agents over `nats`.
    pub fn new(log: SharedLog, nats: Option<async_nats::Client>, config: SkillsConfig) -> Self {
        Self {
            log,
            nats,
            config,
            pending: BTreeMap::new(),
            promotions: BTreeMap::new(),
        }
    }
}

#[async_trait]
impl Reactor<FleetState> for Skills {
    type Effect = Effect;

    fn decide(
        &mut self,
        state: &FleetState,
        seq: u64,
        event: &Envelope,
        now: DateTime<Utc>,
        out: &mut Decisions<Effect>,
    ) {
        decide(state, seq, event, now, &self.config, out);
    }

    async fn execute(
        &mut self,
        _seq: u64,
        effects: &mut Vec<Effect>,
        _out: &mut Outbox,
    ) -> Result<(), ReactError> {
        for effect in effects.drain(..) {
            match effect {
                Effect::Execution(d) => {
                    self.pending
                        .insert((d.account.clone(), d.execution_id.clone()), d);
                }
                Effect::Promote(p) => {
                    self.promotions.insert(p.promotion.aggregate.id.clone(), *p);
                }
            }
        }
        Ok(())
    }

    async fn end_batch(&mut self) -> Result<(), ReactError> {
        if self.pending.is_empty() && self.promotions.is_empty() {
            return Ok(());
        }
        let decisions: Vec<Decision> = std::mem::take(&mut self.pending).into_values().collect();
        let promotions: Vec<PendingPromotion> =
            std::mem::take(&mut self.promotions).into_values().collect();
        let (failed, failed_promotions, error) =
            perform::perform_all(self.log.as_ref(), self.nats.as_ref(), decisions, promotions)
                .await;
        for d in failed {
            self.pending
                .insert((d.account.clone(), d.execution_id.clone()), d);
        }
        for p in failed_promotions {
            self.promotions.insert(p.promotion.aggregate.id.clone(), p);
        }
        error.map_or(Ok(()), Err)
    }
}
