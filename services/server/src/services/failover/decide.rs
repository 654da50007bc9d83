//! A silence is decided once. What the failover service makes of a
//! `sdwan.vip_holder_silent` (a proposal, `no_candidate`, `suppressed`)
//! depends on live inputs — which candidates this process has heard lately
//! — so two replicas, or one replica replaying the silence after a restart
//! from an older checkpoint, can decide differently. Derived event ids make
//! the *same* decision a duplicate, but not a different one. So the
//! decision is appended guarded on the VIP's aggregate: when any decision
//! caused by the same silence landed after the state it was made on, that
//! one stands and this one is dropped.

use powernode_events::Envelope;
use powernode_log::{EventLog, Expect, Filter, LogError};
use tracing::debug;

/// How a decision attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decided {
    /// Appended at this sequence (or found already appended: same event id).
    Landed(u64),
    /// Another decision about the same silence landed first (its kind);
    /// nothing appended.
    Moot(String),
}

/// Attempts before giving up on a VIP that keeps changing.
const ATTEMPTS: usize = 8;

/// The kinds of the decisions about a silence.
const DECISIONS: &str = "system.sdwan.failover.";

/// Appends `decision` (a `system.sdwan.failover.*` event on a VIP's
/// aggregate, caused by a silence, decided on state that had applied the
/// log through `seen_seq`) unless a decision caused by the same silence
/// landed after `seen_seq`.
pub async fn decide_once(
    log: &dyn EventLog,
    seen_seq: u64,
    decision: &Envelope,
) -> Result<Decided, LogError> {
    let Some(cause) = decision.causation_id else {
        return Err(LogError::Invalid(
            "a failover decision names the silence that caused it".into(),
        ));
    };
    for _ in 0..ATTEMPTS {
        let last = log
            .aggregate_last_seq(&decision.account_id, &decision.aggregate)
            .await?;
        if let Some(l) = last.filter(|l| *l > seen_seq) {
            if let Some((id, seq, kind)) = decided_since(log, decision, cause, seen_seq, l).await? {
                if id == decision.id {
                    return Ok(Decided::Landed(seq));
                }
                return Ok(Decided::Moot(kind));
            }
        }
        let expect = last.map_or(Expect::NoEvents, Expect::LastSeq);
        match log.append(decision, expect).await {
            Ok(a) => return Ok(Decided::Landed(a.seq)),
            Err(LogError::Conflict { .. }) => {
                debug!(aggregate = %decision.aggregate.id, "VIP changed while deciding; checking again");
            }
            Err(e) => return Err(e),
        }
    }
    Err(LogError::Unavailable(format!(
        "virtual IP {} kept changing; decision not appended after {ATTEMPTS} attempts",
        decision.aggregate.id
    )))
}

/// The first decision caused by `cause` about the same VIP in
/// `(after, through]`, as (event id, sequence, kind).
async fn decided_since(
    log: &dyn EventLog,
    mine: &Envelope,
    cause: uuid::Uuid,
    after: u64,
    through: u64,
) -> Result<Option<(uuid::Uuid, u64, String)>, LogError> {
    let filter = Filter {
        account: Some(mine.account_id.clone()),
        kind_prefix: Some(DECISIONS.into()),
    };
    let mut from = after + 1;
    while from <= through {
        let batch = log.read(from, 256, &filter).await?;
        let Some(last) = batch.last().map(|r| r.seq) else {
            break;
        };
        for record in batch.iter().filter(|r| r.seq <= through) {
            let Ok(e) = Envelope::decode(&record.bytes) else {
                continue;
            };
            if e.causation_id == Some(cause) && e.aggregate == mine.aggregate {
                return Ok(Some((e.id, record.seq, e.kind().to_string())));
            }
        }
        from = last + 1;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use powernode_events::payloads::sdwan::{
        FailoverNoCandidate, FailoverProposed, VipHolderSilent,
    };
    use powernode_events::{AccountId, Actor, EventPayload};
    use powernode_log::embedded::EmbeddedLog;
    use powernode_runtime::derived_event_id;

    fn caused(cause: &Envelope, tag: &str, payload: impl Into<EventPayload>) -> Envelope {
        let mut e = Envelope::new(
            cause.account_id.clone(),
            Actor::service("failover"),
            payload,
        )
        .caused_by(cause);
        e.id = derived_event_id(cause.id, tag);
        e
    }

    #[tokio::test]
    async fn a_silence_another_replica_decided_is_not_decided_again() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(dir.path()).unwrap();
        let account = AccountId::new("acct-1").unwrap();
        let silent = Envelope::new(
            account,
            Actor::service("sensor"),
            VipHolderSilent {
                virtual_ip_id: "vip-1".into(),
                holder_peer_id: "peer-1".into(),
                last_seen_at: "2026-11-21T12:00:00Z".into(),
                threshold_ms: 3000,
                observer: "sensor@test".into(),
            },
        );
        let seen = log.append(&silent, Expect::Any).await.unwrap().seq;
        // One replica proposes…
        let proposal = caused(
            &silent,
            "proposed",
            FailoverProposed {
                virtual_ip_id: "vip-1".into(),
                current_holder_peer_id: "peer-1".into(),
                candidate_peer_id: "peer-2".into(),
                score: 0.8,
                approval_id: "appr-1".into(),
                generation: 1,
                candidates: Vec::new(),
            },
        );
        let landed = decide_once(&log, seen, &proposal).await.unwrap();
        assert_eq!(landed, Decided::Landed(seen + 1));
        // …the other, replaying the silence with no candidate heard, does not
        // add a second answer…
        let other = caused(
            &silent,
            "no_candidate",
            FailoverNoCandidate {
                virtual_ip_id: "vip-1".into(),
                holder_peer_id: "peer-1".into(),
                reason: "none heard".into(),
            },
        );
        assert_eq!(
            decide_once(&log, seen, &other).await.unwrap(),
            Decided::Moot("system.sdwan.failover.proposed".into())
        );
        // …and the same proposal again is found, not appended twice.
        assert_eq!(decide_once(&log, seen, &proposal).await.unwrap(), landed);
        assert_eq!(log.last_seq().await.unwrap(), seen + 1);
    }
}
