//! The failover service: turns a silent VIP holder into a promotion.
//!
//! * On `sdwan.vip_holder_silent` it scores the candidates ([`candidates`]);
//!   with none it says so (`failover.no_candidate`); under `require_approval`
//!   (the default) it proposes the best and asks an operator
//!   (`failover.proposed` + `approval.requested`, expiring after
//!   `approval_ttl`); under `auto` it promotes at once unless flap damping
//!   holds it back (`failover.suppressed`).
//! * On `approval.granted` it promotes the proposed candidate — if the VIP is
//!   still at the generation the proposal replaced; otherwise the approval
//!   is superseded.
//! * A holder heard again, or any promotion, supersedes a waiting proposal.
//! * A planned drain of the holder (`instance.drained`) migrates the VIP to
//!   the best candidate without approval.
//! * Approvals nobody decided expire (a timer, [`expiry::run_expiry`]).
//!
//! What a silence leads to is appended once ([`decide::decide_once`]:
//! guarded, so a replica deciding differently — it heard other agents, or
//! it replays the silence after a restart — does not add a second answer).
//! Every promotion goes through [`promote::promote`] (generation + 1,
//! guarded), and the old and new holders' agents are nudged so they apply
//! it without waiting for their next heartbeat.
//!
//! Modules: [`config`] (flags and damping), [`candidates`] (scores),
//! [`decide`] (the rules; a silence decided once), [`reactor`] (what the
//! rules decide, performed), [`promote`] (fenced promotions, nudges),
//! [`guard`] (the guarded append both use), [`expiry`] (the approval
//! timer).

pub mod candidates;
pub mod config;
pub mod decide;
pub mod expiry;
pub mod guard;
pub mod promote;
pub mod reactor;

pub use config::{FailoverConfig, FailoverPolicy};
pub use expiry::run_expiry;
pub use promote::{nudge, promotion, promotion_event};
pub use reactor::Failover;

/// The approval action of a VIP promotion.
pub const VIP_PROMOTION: &str = "vip_promotion";

#[cfg(test)]
mod tests;
