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
//! * Approvals nobody decided expire (a timer, [`run_expiry`]).
//!
//! What a silence leads to is appended once ([`decide::decide_once`]:
//! guarded, so a replica deciding differently — it heard other agents, or
//! it replays the silence after a restart — does not add a second answer).
//! Every promotion goes through [`promote::promote`] (generation + 1,
//! guarded), and the old and new holders' agents are nudged so they apply
//! it without waiting for their next heartbeat.

pub mod candidates;
pub mod decide;
pub mod promote;

use crate::liveness::SharedLiveness;
use async_trait::async_trait;
use candidates::{Scored, Scoring};
use chrono::{DateTime, Utc};
use decide::Decided;
use powernode_events::payloads::approvals::{
    ApprovalExpired, ApprovalRequested, ApprovalSuperseded,
};
use powernode_events::payloads::sdwan::{
    FailoverNoCandidate, FailoverProposed, FailoverSuppressed, VirtualIpPromoted,
};
use powernode_events::{AccountId, Actor, Envelope, EventPayload};
use powernode_log::{Expect, SharedLog};
use powernode_projections::fleet::{ApprovalStatus, VipStatus, VirtualIp};
use powernode_projections::FleetState;
use powernode_runtime::{derived_event_id, Outbox, ReactError, Reactor, Shared};
use promote::Promoted;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// What happens when a holder goes silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum FailoverPolicy {
    /// Propose, and promote only once an operator approves.
    #[default]
    RequireApproval,
    /// Promote the best candidate at once.
    Auto,
}

/// Sensor and failover tuning (flags of `powernode up` / `serve`).
#[derive(Debug, Clone, clap::Args)]
pub struct FailoverConfig {
    /// A VIP holder not heard for this long is silent (milliseconds).
    #[arg(long = "silence-threshold-ms", default_value_t = 3000)]
    pub silence_threshold_ms: u64,
    /// What a silence leads to.
    #[arg(
        long = "failover-policy",
        value_enum,
        default_value = "require-approval"
    )]
    pub policy: FailoverPolicy,
    /// How long a failover approval request stays approvable (seconds).
    #[arg(long = "approval-ttl-secs", default_value_t = 900)]
    pub approval_ttl_secs: u64,
    /// No automatic promotion of a VIP within this long of its last one (seconds).
    #[arg(long = "failover-cooldown-secs", default_value_t = 30)]
    pub cooldown_secs: u64,
    /// At most this many promotions of one VIP per window…
    #[arg(long = "max-promotions", default_value_t = 3)]
    pub max_promotions: usize,
    /// …of this many seconds.
    #[arg(long = "promotion-window-secs", default_value_t = 600)]
    pub window_secs: u64,
    /// Name this replica reports as observer (default: `sensor@<hostname>`).
    #[arg(long = "observer")]
    pub observer: Option<String>,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        Self {
            silence_threshold_ms: 3000,
            policy: FailoverPolicy::default(),
            approval_ttl_secs: 900,
            cooldown_secs: 30,
            max_promotions: 3,
            window_secs: 600,
            observer: None,
        }
    }
}

impl FailoverConfig {
    /// The silence threshold.
    pub fn threshold(&self) -> Duration {
        Duration::from_millis(self.silence_threshold_ms.max(1))
    }

    /// The damping window.
    pub fn window(&self) -> Duration {
        Duration::from_secs(self.window_secs)
    }

    /// Scoring parameters at `now`.
    pub fn scoring<'a>(
        &self,
        liveness: &'a crate::liveness::Liveness,
        now: DateTime<Utc>,
    ) -> Scoring<'a> {
        Scoring {
            liveness,
            threshold: self.threshold(),
            window: self.window(),
            now,
        }
    }

    /// Why flap damping holds back an automatic promotion of `vip` now, if it does.
    pub fn damped(&self, vip: &VirtualIp, now: DateTime<Utc>) -> Option<String> {
        if let Some(last) = vip.promotions.last() {
            let since = (now - last.at).to_std().unwrap_or_default();
            if since < Duration::from_secs(self.cooldown_secs) {
                return Some(format!(
                    "cooldown: last promotion {:.1} s ago (min {} s)",
                    since.as_secs_f64(),
                    self.cooldown_secs
                ));
            }
        }
        let window_start = now - chrono::Duration::from_std(self.window()).unwrap_or_default();
        let recent = vip
            .promotions
            .iter()
            .filter(|p| p.at >= window_start)
            .count();
        (recent >= self.max_promotions).then(|| {
            format!(
                "{recent} promotions in the last {} s (max {})",
                self.window_secs, self.max_promotions
            )
        })
    }
}

/// The approval action of a VIP promotion.
pub const VIP_PROMOTION: &str = "vip_promotion";

/// The failover reactor.
pub struct Failover {
    log: SharedLog,
    liveness: SharedLiveness,
    config: FailoverConfig,
    nats: Option<async_nats::Client>,
    /// Promotions decided in this batch, appended together at its end.
    pending: Vec<PendingPromotion>,
}

/// A promotion decided while handling the record at `seen_seq`.
struct PendingPromotion {
    seen_seq: u64,
    promotion: Envelope,
    /// The agents to nudge once it lands: the new holder, the old one.
    nudge: Vec<String>,
}

impl Failover {
    /// A failover reactor appending to `log`.
    pub fn new(log: SharedLog, liveness: SharedLiveness, config: FailoverConfig) -> Self {
        let nats = log.nats_client().map(|(c, _)| c);
        Self {
            log,
            liveness,
            config,
            nats,
            pending: Vec::new(),
        }
    }
}

/// The promotion moving `vip` to `to` under the next generation.
pub fn promotion(
    vip: &VirtualIp,
    to: &powernode_events::payloads::sdwan::FailoverCandidate,
    reason: &str,
    approval_id: Option<&str>,
) -> VirtualIpPromoted {
    VirtualIpPromoted {
        virtual_ip_id: vip.id.clone(),
        from_peer_id: Some(vip.holder_peer_id.clone()),
        to_peer_id: to.peer_id.clone(),
        generation: vip.generation + 1,
        reason: reason.to_string(),
        to_instance_id: Some(to.instance_id.clone()),
        approval_id: approval_id.map(str::to_string),
    }
}

/// The event making `vip` move to `to` (generation + 1), caused by `cause`;
/// its id is derived from the cause, so deciding it again is a duplicate.
pub fn promotion_event(
    cause: &Envelope,
    service: &str,
    vip: &VirtualIp,
    to: &powernode_events::payloads::sdwan::FailoverCandidate,
    reason: &str,
    approval_id: Option<&str>,
) -> Envelope {
    let mut event = Envelope::new(
        cause.account_id.clone(),
        Actor::service(service),
        promotion(vip, to, reason, approval_id),
    )
    .caused_by(cause);
    event.id = derived_event_id(
        cause.id,
        &format!("promote/{}/{}", vip.id, vip.generation + 1),
    );
    event
}

fn decision(cause: &Envelope, tag: &str, payload: impl Into<EventPayload>) -> Envelope {
    let mut event = Envelope::new(
        cause.account_id.clone(),
        Actor::service("failover"),
        payload,
    )
    .caused_by(cause);
    event.id = derived_event_id(cause.id, tag);
    event
}

/// Tells the agents of `instances` to heartbeat now, asking for an answer
/// that includes log sequence `seq` (best effort).
pub async fn nudge(nats: Option<&async_nats::Client>, instances: &[&str], seq: u64) {
    let Some(client) = nats else { return };
    for instance in instances {
        let subject = powernode_protocol::subjects::nudge(instance);
        if let Err(e) = client.publish(subject, seq.to_string().into()).await {
            warn!(error = %e, %instance, "could not nudge an agent");
        }
    }
}

impl Failover {
    fn holder_instance<'a>(
        state: &'a FleetState,
        account: &AccountId,
        vip: &VirtualIp,
    ) -> Option<&'a str> {
        state
            .account(account)?
            .peers
            .get(&vip.holder_peer_id)
            .map(|p| p.instance_id.as_str())
    }

    /// Queues a promotion for the end of the batch ([`Self::promote_pending`]): promotions of different
    /// VIPs are appended at once (each guarded on its own VIP) instead of
    /// one round trip after another — 80 approvals arriving together had
    /// queued ~60 ms at the median behind each other's appends.
    fn do_promote(
        &mut self,
        state: &FleetState,
        seq: u64,
        promotion: Envelope,
        vip: &VirtualIp,
        to: &powernode_events::payloads::sdwan::FailoverCandidate,
    ) {
        let old = Self::holder_instance(state, &promotion.account_id, vip);
        let mut nudge = vec![to.instance_id.clone()];
        nudge.extend(old.map(str::to_string));
        self.pending.push(PendingPromotion {
            seen_seq: seq,
            promotion,
            nudge,
        });
    }

    /// Appends the batch's promotions together; nudges the agents of each
    /// one that landed. Failed ones stay queued for the retry.
    async fn promote_pending(&mut self) -> Result<(), ReactError> {
        let pending = std::mem::take(&mut self.pending);
        if pending.is_empty() {
            return Ok(());
        }
        let log = self.log.clone();
        let results = futures::future::join_all(
            pending
                .iter()
                .map(|p| promote::promote(log.as_ref(), p.seen_seq, &p.promotion)),
        )
        .await;
        let mut failed = Vec::new();
        let mut error = None;
        for (p, result) in pending.into_iter().zip(results) {
            match result {
                Ok(Promoted::Landed(seq)) => {
                    let targets: Vec<&str> = p.nudge.iter().map(String::as_str).collect();
                    nudge(self.nats.as_ref(), &targets, seq).await;
                }
                Ok(Promoted::Moot(why)) => {
                    info!(event = %p.promotion.id, %why, "promotion not needed");
                }
                Err(e) => {
                    let e = ReactError::from(e);
                    if matches!(e, ReactError::Fatal(_)) || error.is_none() {
                        error = Some(e);
                    }
                    failed.push(p);
                }
            }
        }
        self.pending = failed;
        error.map_or(Ok(()), Err)
    }

    async fn on_silent(
        &mut self,
        state: &FleetState,
        seq: u64,
        event: &Envelope,
        vip: &VirtualIp,
        out: &mut Outbox,
    ) -> Result<(), ReactError> {
        let now = Utc::now();
        let scored: Vec<Scored> = candidates::candidates(
            state,
            &event.account_id,
            vip,
            None,
            &self.config.scoring(&self.liveness, now),
        );
        let Some(best) = candidates::best(&scored).cloned() else {
            let reason = if scored.is_empty() {
                "no other ready k3s-server in the cluster (single-server cluster?)".to_string()
            } else {
                format!(
                    "{} candidate(s), none heard within the silence threshold",
                    scored.len()
                )
            };
            self.decide(
                seq,
                decision(
                    event,
                    "no_candidate",
                    FailoverNoCandidate {
                        virtual_ip_id: vip.id.clone(),
                        holder_peer_id: vip.holder_peer_id.clone(),
                        reason,
                    },
                ),
            )
            .await?;
            return Ok(());
        };
        match self.config.policy {
            FailoverPolicy::Auto => {
                if let Some(reason) = self.config.damped(vip, now) {
                    self.decide(
                        seq,
                        decision(
                            event,
                            "suppressed",
                            FailoverSuppressed {
                                virtual_ip_id: vip.id.clone(),
                                holder_peer_id: vip.holder_peer_id.clone(),
                                candidate_peer_id: Some(best.peer_id.clone()),
                                reason,
                            },
                        ),
                    )
                    .await?;
                    return Ok(());
                }
                let promotion =
                    promotion_event(event, "failover", vip, &best, "auto_failover", None);
                {
                    self.do_promote(state, seq, promotion, vip, &best);
                    Ok(())
                }
            }
            FailoverPolicy::RequireApproval => {
                let approval_id = format!(
                    "appr-{}",
                    &derived_event_id(event.id, "approval").simple().to_string()[..12]
                );
                let expires_at = event.occurred_at
                    + chrono::Duration::seconds(self.config.approval_ttl_secs as i64);
                let proposal = decision(
                    event,
                    "proposed",
                    FailoverProposed {
                        virtual_ip_id: vip.id.clone(),
                        current_holder_peer_id: vip.holder_peer_id.clone(),
                        candidate_peer_id: best.peer_id.clone(),
                        score: best.score,
                        approval_id: approval_id.clone(),
                        generation: vip.generation,
                        candidates: scored.iter().map(|s| s.candidate.clone()).collect(),
                    },
                );
                if !self.decide(seq, proposal).await? {
                    return Ok(());
                }
                out.push(decision(
                    event,
                    "approval_requested",
                    ApprovalRequested {
                        approval_id,
                        action: VIP_PROMOTION.into(),
                        subject: format!("virtual_ip/{}", vip.id),
                        summary: format!(
                            "promote {} (score {:.2}) to hold VIP {} of cluster {}: holder {} silent since {}",
                            best.peer_id,
                            best.score,
                            vip.vip,
                            vip.cluster_id,
                            vip.holder_peer_id,
                            vip.silent_since.as_deref().unwrap_or("?")
                        ),
                        expires_at: expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    },
                ));
                Ok(())
            }
        }
    }

    /// Appends a decision about a silence unless another decision about
    /// the same silence landed first; answers whether this one stands.
    async fn decide(&self, seq: u64, decision: Envelope) -> Result<bool, ReactError> {
        match decide::decide_once(self.log.as_ref(), seq, &decision).await? {
            Decided::Landed(_) => Ok(true),
            Decided::Moot(other) => {
                info!(vip = %decision.aggregate.id, %other, "this silence was decided already; not deciding again");
                Ok(false)
            }
        }
    }

    fn supersede(event: &Envelope, out: &mut Outbox, approval_id: &str, reason: String) {
        out.push(decision(
            event,
            &format!("supersede/{approval_id}"),
            ApprovalSuperseded {
                approval_id: approval_id.to_string(),
                reason,
            },
        ));
    }
}

#[async_trait]
impl Reactor<FleetState> for Failover {
    async fn react(
        &mut self,
        state: &FleetState,
        seq: u64,
        event: &Envelope,
        out: &mut Outbox,
    ) -> Result<(), ReactError> {
        let account = &event.account_id;
        match &event.payload {
            EventPayload::VipHolderSilent(p) => {
                let Some(vip) = state.virtual_ip(account, &p.virtual_ip_id) else {
                    return Ok(());
                };
                // Only a silence that is still current and not already being handled.
                if vip.status != VipStatus::Allocated
                    || !vip.holder_silent
                    || vip.holder_peer_id != p.holder_peer_id
                    || vip.pending_proposal.is_some()
                {
                    return Ok(());
                }
                let vip = vip.clone();
                self.on_silent(state, seq, event, &vip, out).await
            }
            EventPayload::VipHolderRecovered(p) => {
                if let Some(proposal) = state
                    .virtual_ip(account, &p.virtual_ip_id)
                    .and_then(|v| v.pending_proposal.as_ref())
                {
                    Self::supersede(
                        event,
                        out,
                        &proposal.approval_id,
                        format!("holder {} was heard again", p.holder_peer_id),
                    );
                }
                Ok(())
            }
            EventPayload::ApprovalGranted(p) => {
                let Some(approval) = state.approval(account, &p.approval_id) else {
                    return Ok(());
                };
                if approval.action != VIP_PROMOTION || approval.status != ApprovalStatus::Granted {
                    return Ok(());
                }
                let Some(vip) = state
                    .account(account)
                    .and_then(|a| {
                        a.virtual_ips.values().find(|v| {
                            v.pending_proposal
                                .as_ref()
                                .is_some_and(|pp| pp.approval_id == p.approval_id)
                        })
                    })
                    .cloned()
                else {
                    return Ok(());
                };
                let proposal = vip.pending_proposal.clone().expect("found by its proposal");
                let now = Utc::now();
                let scored = candidates::candidates(
                    state,
                    account,
                    &vip,
                    None,
                    &self.config.scoring(&self.liveness, now),
                );
                let chosen = scored
                    .iter()
                    .find(|s| s.candidate.peer_id == proposal.candidate_peer_id)
                    .map(|s| s.candidate.clone());
                match chosen {
                    Some(to)
                        if vip.generation == proposal.generation
                            && vip.status == VipStatus::Allocated =>
                    {
                        let promotion = promotion_event(
                            event,
                            "failover",
                            &vip,
                            &to,
                            "approved_failover",
                            Some(&p.approval_id),
                        );
                        {
                            self.do_promote(state, seq, promotion, &vip, &to);
                            Ok(())
                        }
                    }
                    Some(_) => {
                        Self::supersede(
                            event,
                            out,
                            &p.approval_id,
                            format!("the VIP moved on to generation {}", vip.generation),
                        );
                        Ok(())
                    }
                    None => {
                        Self::supersede(
                            event,
                            out,
                            &p.approval_id,
                            format!(
                                "candidate {} is no longer a ready member",
                                proposal.candidate_peer_id
                            ),
                        );
                        Ok(())
                    }
                }
            }
            EventPayload::InstanceDrained(p) => {
                let Some(acct) = state.account(account) else {
                    return Ok(());
                };
                let held: Vec<VirtualIp> = acct
                    .virtual_ips
                    .values()
                    .filter(|v| {
                        v.status == VipStatus::Allocated
                            && acct
                                .peers
                                .get(&v.holder_peer_id)
                                .is_some_and(|peer| peer.instance_id == p.instance_id)
                    })
                    .cloned()
                    .collect();
                let now = Utc::now();
                for vip in held {
                    let scored = candidates::candidates(
                        state,
                        account,
                        &vip,
                        Some(&p.instance_id),
                        &self.config.scoring(&self.liveness, now),
                    );
                    match candidates::best(&scored).cloned() {
                        Some(to) => {
                            let promotion = promotion_event(event, "failover", &vip, &to, "drain", None);
                            self.do_promote(state, seq, promotion, &vip, &to)
                        }
                        None => out.push(decision(
                            event,
                            &format!("no_candidate/{}", vip.id),
                            FailoverNoCandidate {
                                virtual_ip_id: vip.id.clone(),
                                holder_peer_id: vip.holder_peer_id.clone(),
                                reason: "the drained holder has no ready k3s-server to hand the VIP to (single-server cluster: the API endpoint is down until it returns)".into(),
                            },
                        )),
                    }
                }
                Ok(())
            }
            EventPayload::VirtualIpPromoted(p) => {
                // Any waiting approval about this VIP is moot now.
                let subject = format!("virtual_ip/{}", p.virtual_ip_id);
                for approval in state.pending_approvals(account) {
                    if approval.subject == subject && Some(&approval.id) != p.approval_id.as_ref() {
                        Self::supersede(
                            event,
                            out,
                            &approval.id,
                            format!(
                                "the VIP was promoted to {} at generation {} ({})",
                                p.to_peer_id, p.generation, p.reason
                            ),
                        );
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    async fn end_batch(&mut self) -> Result<(), ReactError> {
        self.promote_pending().await
    }
}

/// Expires approval requests nobody decided in time, until `shutdown`.
pub async fn run_expiry(log: SharedLog, shared: Shared<FleetState>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = Utc::now();
        let due: Vec<(AccountId, String)> = {
            let state = shared.state.read().await;
            state
                .accounts()
                .flat_map(|(id, _)| {
                    state
                        .pending_approvals(id)
                        .into_iter()
                        .filter(|a| a.expires_at_utc().is_some_and(|t| t <= now))
                        .map(|a| (id.clone(), a.id.clone()))
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        for (account, approval_id) in due {
            let mut event = Envelope::new(
                account,
                Actor::service("failover"),
                ApprovalExpired {
                    approval_id: approval_id.clone(),
                },
            );
            event.id = derived_event_id(EXPIRY_NAMESPACE, &approval_id);
            event.correlation_id = event.id;
            match log.append(&event, Expect::Any).await {
                Ok(_) => info!(%approval_id, "approval request expired"),
                Err(e) => warn!(error = %e, %approval_id, "could not record an expiry; retrying"),
            }
        }
    }
}

/// Namespace of expiry event ids (one expiry per approval, whichever replica).
const EXPIRY_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x0e1b_12ed_0000_4000_8000_6578_7069_7265);
