//! Promotion with fencing: a VIP moves to a new holder under a generation
//! one higher than the last, and the append is guarded on the VIP's
//! aggregate (expected last sequence), so two promotions decided at once —
//! two failover replicas, an operator forcing while the service acts — cannot
//! both land: the second finds the aggregate moved on, sees the promotion
//! that won, and stops.

use powernode_events::payloads::sdwan::VirtualIpPromoted;
use powernode_events::{AccountId, AggregateRef, AggregateType, Envelope, EventPayload};
use powernode_log::{EventLog, Expect, Filter, LogError};
use tracing::{debug, info};

/// How a promotion attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Promoted {
    /// Appended at this sequence (or found already appended: same event id).
    Landed(u64),
    /// Another promotion or a release of this VIP landed first; nothing appended.
    Moot(String),
}

/// Attempts before giving up on a VIP that keeps changing.
const ATTEMPTS: usize = 8;

/// Appends `event` (a `virtual_ip.promoted` decided on state that had
/// applied the log through `seen_seq`) if no other promotion or release of
/// the VIP landed after `seen_seq`.
pub async fn promote(
    log: &dyn EventLog,
    seen_seq: u64,
    event: &Envelope,
) -> Result<Promoted, LogError> {
    let EventPayload::VirtualIpPromoted(p) = &event.payload else {
        return Err(LogError::Invalid(
            "promote takes a virtual_ip.promoted event".into(),
        ));
    };
    let aggregate = AggregateRef::new(AggregateType::VirtualIp, p.virtual_ip_id.clone());
    for _ in 0..ATTEMPTS {
        let last = log
            .aggregate_last_seq(&event.account_id, &aggregate)
            .await?;
        if let Some(l) = last.filter(|l| *l > seen_seq) {
            if let Some(why) = landed_since(log, &event.account_id, p, seen_seq, l).await? {
                // Ours, appended before (a retry, or a replica with the same id)?
                if why.0 == event.id {
                    return Ok(Promoted::Landed(why.1));
                }
                return Ok(Promoted::Moot(why.2));
            }
        }
        let expect = last.map_or(Expect::NoEvents, Expect::LastSeq);
        match log.append(event, expect).await {
            Ok(a) => {
                info!(
                    vip = %p.virtual_ip_id,
                    to = %p.to_peer_id,
                    generation = p.generation,
                    reason = %p.reason,
                    seq = a.seq,
                    duplicate = a.duplicate,
                    "VIP promoted"
                );
                return Ok(Promoted::Landed(a.seq));
            }
            Err(LogError::Conflict { .. }) => {
                debug!(vip = %p.virtual_ip_id, "VIP changed while promoting; checking again");
            }
            Err(e) => return Err(e),
        }
    }
    Err(LogError::Unavailable(format!(
        "virtual IP {} kept changing; promotion not appended after {ATTEMPTS} attempts",
        p.virtual_ip_id
    )))
}

/// The first promotion or release of the VIP in `(after, through]`, as
/// (event id, sequence, description).
async fn landed_since(
    log: &dyn EventLog,
    account: &AccountId,
    mine: &VirtualIpPromoted,
    after: u64,
    through: u64,
) -> Result<Option<(uuid::Uuid, u64, String)>, LogError> {
    let filter = Filter {
        account: Some(account.clone()),
        kind_prefix: Some("system.sdwan.virtual_ip.".into()),
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
            match &e.payload {
                EventPayload::VirtualIpPromoted(p)
                    if p.virtual_ip_id == mine.virtual_ip_id && p.generation >= mine.generation =>
                {
                    return Ok(Some((
                        e.id,
                        record.seq,
                        format!(
                            "generation {} already went to {} ({})",
                            p.generation, p.to_peer_id, p.reason
                        ),
                    )));
                }
                EventPayload::VirtualIpReleased(p) if p.virtual_ip_id == mine.virtual_ip_id => {
                    return Ok(Some((e.id, record.seq, format!("released: {}", p.reason))));
                }
                _ => {}
            }
        }
        from = last + 1;
    }
    Ok(None)
}
