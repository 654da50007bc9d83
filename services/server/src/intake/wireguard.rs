//! WireGuard key registration: an agent's signed
//! `system.sdwan.wireguard_key.registered`, admitted like a handshake
//! event (signed by the instance it is about, fresh UUIDv7 id), then
//! checked here: the key is base64 of 32 bytes, the endpoint is an
//! `address:port`, and the key is not another instance's (a key names one
//! instance, fleet-wide). The same registration again is accepted without
//! a second append. A refusal appends nothing but the
//! `system.agent.submission_rejected` that records it.

use super::{log_refusal, refusal, Intake, Refusal};
use powernode_events::payloads::sdwan::WireguardKeyRegistered;
use powernode_events::wireguard::{check_public_key, parse_endpoint};
use powernode_events::{AccountId, AggregateRef, AggregateType, Envelope};
use powernode_log::{Expect, LogError};
use powernode_projections::FleetState;
use powernode_protocol::SubmitReply;

/// The reason code of a key another instance registered.
pub const KEY_TAKEN: &str = "wireguard_key_taken";

/// How often a registration is decided again after losing a race on the
/// instance (another registration of the same instance landed first).
const ATTEMPTS: usize = 3;

/// What the projection says about a registration.
enum Verdict {
    /// Registered exactly so already, at this sequence.
    Same(u64),
    /// Another instance registered the key (named when it is in the
    /// same account).
    Taken(String),
    /// New (or a change of key or endpoint): append, guarded on the
    /// instance's last sequence.
    Append,
}

/// What the projection says about registration `p` in `account`.
fn verdict(fleet: &FleetState, account: &AccountId, p: &WireguardKeyRegistered) -> Verdict {
    if let Some((owner_account, owner)) = fleet.wireguard_key_owner(&p.public_key) {
        if owner_account != account {
            return Verdict::Taken("an instance of another account".into());
        }
        if owner != p.instance_id {
            return Verdict::Taken(format!("instance {owner}"));
        }
    }
    match fleet
        .account(account)
        .and_then(|a| a.wireguard_keys.get(&p.instance_id))
    {
        Some(k) if k.public_key == p.public_key && k.endpoint == p.endpoint => {
            Verdict::Same(k.registered_seq)
        }
        _ => Verdict::Append,
    }
}

impl Intake {
    /// Registers an agent's WireGuard key and endpoint (see the module doc).
    pub(super) async fn register_wireguard_key(
        &self,
        event: &Envelope,
        p: &WireguardKeyRegistered,
    ) -> Result<SubmitReply, Refusal> {
        let account = &event.account_id;
        let bad_input = check_public_key(&p.public_key)
            .map_err(|e| refusal("bad_wireguard_key", e.to_string()))
            .and_then(|()| {
                parse_endpoint(&p.endpoint)
                    .map(|_| ())
                    .map_err(|e| refusal("bad_endpoint", e.to_string()))
            });
        if let Err(refused) = bad_input {
            let reason = format!("{}: {}", refused.code, refused.message);
            self.record_rejection(account, &p.instance_id, Some(event), &reason)
                .await;
            return Err(refused);
        }
        let aggregate = AggregateRef::new(AggregateType::Instance, p.instance_id.clone());
        for _ in 0..ATTEMPTS {
            // Decided on a projection that has everything the guard names.
            let guard = self
                .log
                .aggregate_last_seq(account, &aggregate)
                .await
                .map_err(super::unavailable)?;
            if let Some(g) = guard {
                self.caught_up(g).await?;
            }
            let verdict = verdict(&*self.fleet.state.read().await, account, p);
            match verdict {
                Verdict::Same(seq) => return Ok(SubmitReply::Accepted { seq }),
                Verdict::Taken(whose) => {
                    let reason = format!(
                        "{KEY_TAKEN}: WireGuard key {} is already registered by {whose}; each instance makes its own key",
                        p.public_key
                    );
                    self.record_rejection(account, &p.instance_id, Some(event), &reason)
                        .await;
                    return Ok(SubmitReply::Rejected { reason });
                }
                Verdict::Append => {}
            }
            let expect = guard.map_or(Expect::NoEvents, Expect::LastSeq);
            match self.log.append(event, expect).await {
                Ok(a) => {
                    self.caught_up(a.seq).await?;
                    return Ok(SubmitReply::Accepted { seq: a.seq });
                }
                Err(LogError::Conflict { .. }) => continue,
                Err(e) => return Err(log_refusal(e)),
            }
        }
        Err(refusal(
            "conflict",
            format!(
                "instance {} changed {ATTEMPTS} times while registering its WireGuard key; retry",
                p.instance_id
            ),
        ))
    }
}
