//! Access grants whose time ran out expire: a timer (run next to the sdwan
//! service's consumer) compares each active grant's `expires_at` with now
//! and appends `access_grant.revoked` with reason `expired`, which removes
//! the grant's peer from its gateway's config.
//!
//! * Restart-safe: the timer looks at once when it starts, so what fell
//!   due while no replica ran expires on the first tick.
//! * Replica-safe: a grant ends once. The ending event is appended under
//!   the grant's network aggregate guard (`Expect::LastSeq`), decided on a
//!   projection that has applied that aggregate's last event; and its id
//!   is derived from the grant id, so a revocation and an expiry (or two
//!   replicas' expiries) are one record.

use chrono::{DateTime, Utc};
use powernode_events::payloads::sdwan::{AccessGrantEnd, AccessGrantRevoked};
use powernode_events::{AccountId, Actor, AggregateRef, AggregateType, Envelope};
use powernode_log::{Expect, LogError, SharedLog};
use powernode_projections::fleet::AccessGrant;
use powernode_projections::FleetState;
use powernode_runtime::Shared;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// How often the timer looks.
const TICK: Duration = Duration::from_secs(1);

/// Namespace of grant-ending event ids: one end per grant, whoever ends it.
const END_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6a7a_e11d_0000_4000_8000_6772_616e_7473);

/// The aggregate grants are created and ended on: their network's.
pub fn network_aggregate(network_id: &str) -> AggregateRef {
    AggregateRef::new(AggregateType::Network, network_id)
}

/// The event that ends `grant` for `reason`, its id derived from the grant
/// id: a revocation and an expiry of one grant are one record.
pub fn end_event(
    account: &AccountId,
    actor: Actor,
    grant: &AccessGrant,
    reason: AccessGrantEnd,
) -> Envelope {
    let mut event = Envelope::new(
        account.clone(),
        actor,
        AccessGrantRevoked {
            grant_id: grant.id.clone(),
            network_id: grant.network_id.clone(),
            reason,
        },
    );
    event.id = uuid::Uuid::new_v5(&END_NAMESPACE, grant.id.as_bytes());
    event.correlation_id = event.id;
    event
}

/// A grant due to expire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// Its account.
    pub account: AccountId,
    /// The grant id.
    pub grant_id: String,
    /// Its network.
    pub network_id: String,
}

/// The grants that have not ended but whose `expires_at` is at or before
/// `now`, in account and grant-id order.
pub fn due(state: &FleetState, now: DateTime<Utc>) -> Vec<Due> {
    let mut out = Vec::new();
    for (account, acc) in state.accounts() {
        for g in acc.grants.values() {
            if g.ended.is_none() && g.expires_at.is_some_and(|t| t <= now) {
                out.push(Due {
                    account: account.clone(),
                    grant_id: g.id.clone(),
                    network_id: g.network_id.clone(),
                });
            }
        }
    }
    out
}

/// Expires `due` if it still is, under its network's guard. `Ok(false)`:
/// not now (the projection lags the aggregate, the grant ended meanwhile,
/// or another append went first); the next tick looks again.
async fn expire_one(
    log: &SharedLog,
    shared: &Shared<FleetState>,
    due: &Due,
    now: DateTime<Utc>,
) -> Result<bool, LogError> {
    let aggregate = network_aggregate(&due.network_id);
    let last = log.aggregate_last_seq(&due.account, &aggregate).await?;
    if shared.applied() < last.unwrap_or(0) {
        return Ok(false);
    }
    let event = {
        let state = shared.state.read().await;
        let Some(grant) = state
            .account(&due.account)
            .and_then(|a| a.grants.get(&due.grant_id))
        else {
            return Ok(false);
        };
        if grant.ended.is_some() || grant.expires_at.is_none_or(|t| t > now) {
            return Ok(false);
        }
        let mut event = end_event(
            &due.account,
            Actor::service("sdwan"),
            grant,
            AccessGrantEnd::Expired,
        );
        event.occurred_at = now;
        event
    };
    match log
        .append(&event, last.map_or(Expect::NoEvents, Expect::LastSeq))
        .await
    {
        Ok(a) => Ok(!a.duplicate),
        Err(LogError::Conflict { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Expires access grants whose time ran out, until `shutdown`, reading the
/// time from `clock` (the wall clock; tests pass their own).
pub async fn run_expiry(
    log: SharedLog,
    shared: Shared<FleetState>,
    clock: impl Fn() -> DateTime<Utc> + Send + 'static,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = clock();
        let due = due(&*shared.state.read().await, now);
        for d in due {
            match expire_one(&log, &shared, &d, now).await {
                Ok(true) => {
                    info!(grant_id = %d.grant_id, network_id = %d.network_id, "access grant expired")
                }
                Ok(false) => {
                    debug!(grant_id = %d.grant_id, "access grant expiry deferred to the next tick")
                }
                Err(e) => {
                    warn!(error = %e, grant_id = %d.grant_id, "could not record an access grant expiry; retrying")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::given::{Given, ACCOUNT};
    use super::*;
    use powernode_events::payloads::sdwan::AccessGrantCreated;

    fn created(g: &Given, id: &str, expires_at: Option<&str>) -> AccessGrantCreated {
        AccessGrantCreated {
            grant_id: id.into(),
            network_id: g.ids.network.clone(),
            name: "laptop".into(),
            public_key: powernode_events::wireguard::encode_base64(&[9; 32]),
            address: "fd00::1000".parse().expect("an address"),
            gateway_peer_id: g.ids.worker_peer.clone(),
            expires_at: expires_at.map(str::to_string),
        }
    }

    fn at(t: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(t)
            .expect("a time")
            .with_timezone(&Utc)
    }

    #[test]
    fn a_grant_is_due_once_its_time_is_up_and_not_after_it_ended() {
        let mut g = Given::fleet();
        let soon = created(&g, "grant-soon", Some("2030-01-01T00:00:00Z"));
        let never = created(&g, "grant-never", None);
        g.and(soon).and(never);
        let state = g.state();
        assert!(due(&state, at("2029-12-31T23:59:59Z")).is_empty());
        let d = due(&state, at("2030-01-01T00:00:00Z"));
        assert_eq!(
            d,
            vec![Due {
                account: AccountId::new(ACCOUNT).expect("an account id"),
                grant_id: "grant-soon".into(),
                network_id: g.ids.network.clone(),
            }]
        );
        g.and(AccessGrantRevoked {
            grant_id: "grant-soon".into(),
            network_id: g.ids.network.clone(),
            reason: AccessGrantEnd::Revoked,
        });
        assert!(due(&g.state(), at("2031-01-01T00:00:00Z")).is_empty());
    }

    #[test]
    fn the_ending_event_of_a_grant_has_one_id_whatever_the_reason() {
        let mut g = Given::fleet();
        let c = created(&g, "grant-a", Some("2030-01-01T00:00:00Z"));
        g.and(c);
        let state = g.state();
        let account = AccountId::new(ACCOUNT).expect("an account id");
        let grant = state
            .account(&account)
            .and_then(|a| a.grants.get("grant-a"))
            .expect("the grant");
        let revoked = end_event(
            &account,
            Actor::service("x"),
            grant,
            AccessGrantEnd::Revoked,
        );
        let expired = end_event(
            &account,
            Actor::service("sdwan"),
            grant,
            AccessGrantEnd::Expired,
        );
        assert_eq!(revoked.id, expired.id);
        assert_eq!(revoked.aggregate, network_aggregate(&g.ids.network));
        let other = AccessGrant {
            id: "grant-b".into(),
            ..grant.clone()
        };
        assert_ne!(
            end_event(
                &account,
                Actor::service("x"),
                &other,
                AccessGrantEnd::Revoked
            )
            .id,
            revoked.id
        );
    }
}
