//! Operator access grants: a WireGuard peer for an operator's machine that
//! reaches a network through its gateway peer.
//!
//! * The grant's /128 comes from the network's overlay /64, decided on a
//!   projection that has applied the network aggregate's last event and
//!   appended under that aggregate's `Expect::LastSeq` guard, so two
//!   concurrent creations never get the same address (the loser decides
//!   again). Grant addresses are `<overlay>::1000` upwards: clear of the
//!   VIP range `::100/120` and of peers' /128s (whose host id has the top
//!   bit set); an address is never handed out twice, even after its grant
//!   ended.
//! * The wg-quick file names only the gateway, never a VIP's holder: the
//!   gateway forwards, and every other peer routes the grant's /128 back
//!   through it, so the file keeps working across a failover.
//! * A platform-made private key is written only into this answer's file;
//!   it is in no event, log line or `Debug` output.
//! * A grant ends once: the ending event (revoked here, expired by
//!   [`crate::services::grants`]) is appended under the same guard with an
//!   id derived from the grant id ([`end_event`]).

use super::sdwan::{conflict_backoff, GUARDED_ATTEMPTS};
use super::{check_name, handlers, new_id, ActionContext};
use crate::api::error::{ApiError, ErrorCode};
use crate::services::grants::{end_event, network_aggregate};
use chrono::{DateTime, SecondsFormat, Utc};
use ipnet::IpNet;
use powernode_actions::grants::{
    AccessGrant, AccessGrantStatus, CreateAccessGrantAnswer, CreateAccessGrantArgs,
    ListAccessGrantsAnswer, ListAccessGrantsArgs, RevokeAccessGrantAnswer, RevokeAccessGrantArgs,
    MAX_TTL_SECS, PRIVATE_KEY_PLACEHOLDER,
};
use powernode_events::payloads::sdwan::{AccessGrantCreated, AccessGrantEnd};
use powernode_events::wireguard::{check_public_key, encode_base64, PERSISTENT_KEEPALIVE_SECS};
use powernode_events::{AccountId, Envelope};
use powernode_log::Expect;
use powernode_projections::fleet;
use powernode_projections::FleetState;
use std::net::Ipv6Addr;

handlers! {
    CreateAccessGrant => create_access_grant,
    ListAccessGrants => list_access_grants,
    RevokeAccessGrant => revoke_access_grant,
}

/// The first host id grants get in the overlay /64 (`::1000`).
const GRANT_HOST_FIRST: u128 = 0x1000;
/// One past the last host id grants get: 2^32 addresses, far below the
/// peers' ids (top bit set).
const GRANT_HOST_END: u128 = 1 << 32;

/// A grant as the API shows it, its status judged at `now`.
pub fn view(g: &fleet::AccessGrant, now: DateTime<Utc>) -> AccessGrant {
    let status = match g.ended {
        Some(AccessGrantEnd::Revoked) => AccessGrantStatus::Revoked,
        Some(AccessGrantEnd::Expired) => AccessGrantStatus::Expired,
        None if g.is_active(now) => AccessGrantStatus::Active,
        None => AccessGrantStatus::Expired,
    };
    AccessGrant {
        id: g.id.clone(),
        network_id: g.network_id.clone(),
        name: g.name.clone(),
        public_key: g.public_key.clone(),
        address: g.address,
        gateway_peer_id: g.gateway_peer_id.clone(),
        expires_at: g.expires_at,
        status,
        created_seq: g.created_seq,
    }
}

/// The key pair of a grant: its public key, and the private key when the
/// platform made it (the caller brought none).
struct KeyPair {
    public: String,
    private: Option<String>,
}

/// Checks the caller's public key, or makes a key pair.
fn key_pair(public_key: Option<&str>) -> Result<KeyPair, ApiError> {
    match public_key {
        Some(key) => {
            check_public_key(key)
                .map_err(|e| ApiError::bad_request(ErrorCode::InvalidArguments, e.to_string()))?;
            Ok(KeyPair {
                public: key.to_string(),
                private: None,
            })
        }
        None => {
            let secret = x25519_dalek::StaticSecret::random();
            let public = x25519_dalek::PublicKey::from(&secret);
            Ok(KeyPair {
                public: encode_base64(public.as_bytes()),
                private: Some(encode_base64(secret.as_bytes())),
            })
        }
    }
}

/// Refuses a ttl of 0 or over [`MAX_TTL_SECS`]; answers the expiry.
fn expiry(ttl_secs: Option<u64>, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, ApiError> {
    let Some(ttl) = ttl_secs else {
        return Ok(None);
    };
    if ttl == 0 || ttl > MAX_TTL_SECS {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidArguments,
            format!("ttl_secs must be 1-{MAX_TTL_SECS} (366 days), got {ttl}"),
        ));
    }
    let ttl = i64::try_from(ttl).expect("at most MAX_TTL_SECS");
    Ok(Some(now + chrono::Duration::seconds(ttl)))
}

/// The first free grant address of the network: not a peer's, not in the
/// VIP range, not any grant's (ended ones included).
fn free_address(fleet: &FleetState, account: &AccountId, n: &fleet::Network) -> Option<Ipv6Addr> {
    let acc = fleet.account(account)?;
    let used: std::collections::HashSet<Ipv6Addr> = acc
        .peers
        .values()
        .filter(|p| p.network_id == n.id)
        .map(|p| p.overlay_ip)
        .chain(
            acc.grants
                .values()
                .filter(|g| g.network_id == n.id)
                .map(|g| g.address),
        )
        .collect();
    let base = u128::from(n.overlay_prefix.network());
    (GRANT_HOST_FIRST..GRANT_HOST_END)
        .map(|h| Ipv6Addr::from(base | h))
        .find(|a| !used.contains(a) && !n.vip_range.contains(a))
}

/// Refuses a public key that is already a peer's, or another live grant's
/// on the network (WireGuard allows a key once per interface).
fn check_key_unused(
    fleet: &FleetState,
    account: &AccountId,
    network_id: &str,
    key: &str,
) -> Result<(), ApiError> {
    let taken = |what: String| {
        ApiError::bad_request(
            ErrorCode::InvalidArguments,
            format!("public_key is already the key of {what}; make a new key pair"),
        )
    };
    if fleet.wireguard_key_owner(key).is_some() {
        return Err(taken("a peer".into()));
    }
    let acc = fleet.account(account);
    if let Some(g) = acc
        .into_iter()
        .flat_map(|a| a.grants.values())
        .find(|g| g.network_id == network_id && g.ended.is_none() && g.public_key == key)
    {
        return Err(taken(format!("access grant {}", g.id)));
    }
    Ok(())
}

/// `system_sdwan_create_access_grant({network_id, name, public_key?, ttl_secs?})`.
pub async fn create_access_grant(
    ctx: &ActionContext<'_>,
    a: CreateAccessGrantArgs,
) -> Result<CreateAccessGrantAnswer, ApiError> {
    check_name("name", &a.name)?;
    let keys = key_pair(a.public_key.as_deref())?;
    let expires_at = expiry(a.ttl_secs, Utc::now())?;
    let account = ctx.operator.account.clone();
    let aggregate = network_aggregate(&a.network_id);
    let grant_id = new_id("grant");
    let mut appended = None;
    for attempt in 0..GUARDED_ATTEMPTS {
        let last = ctx.log().aggregate_last_seq(&account, &aggregate).await?;
        ctx.wait_for(last.unwrap_or(0)).await?;
        let event = {
            let fleet = ctx.fleet().await;
            let network = fleet
                .network(&account, &a.network_id)
                .ok_or_else(|| ApiError::not_found("network", &a.network_id))?;
            check_key_unused(&fleet, &account, &network.id, &keys.public)?;
            let gateway = fleet
                .wireguard_gateway(&account, &network.id)
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::NoGateway,
                        format!(
                            "no peer of network {} has registered a WireGuard key yet; an access grant needs a gateway peer to end at",
                            network.id
                        ),
                    )
                })?;
            let address = free_address(&fleet, &account, network).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::Exhausted,
                    format!("network {} has no free grant address left", network.id),
                )
            })?;
            Envelope::new(
                account.clone(),
                ctx.actor(),
                AccessGrantCreated {
                    grant_id: grant_id.clone(),
                    network_id: network.id.clone(),
                    name: a.name.clone(),
                    public_key: keys.public.clone(),
                    address,
                    gateway_peer_id: gateway.id.clone(),
                    expires_at: expires_at.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)),
                },
            )
        };
        let expect = last.map_or(Expect::NoEvents, Expect::LastSeq);
        match ctx.append_guarded(&event, expect).await {
            Ok(seq) => {
                appended = Some(seq);
                break;
            }
            Err(ApiError {
                code: ErrorCode::Conflict,
                ..
            }) => conflict_backoff(attempt).await,
            Err(e) => return Err(e),
        }
    }
    if appended.is_none() {
        return Err(ApiError::unavailable(format!(
            "network {} is busy ({GUARDED_ATTEMPTS} concurrent changes went first); retry",
            a.network_id
        )));
    }
    let fleet = ctx.fleet().await;
    let grant = fleet
        .account(&account)
        .and_then(|acc| acc.grants.get(&grant_id))
        .ok_or_else(|| {
            ApiError::unavailable("the grant was stored but is not visible yet; list the grants")
        })?;
    let wireguard_config = wg_quick(&fleet, &account, grant, keys.private.as_deref())?;
    Ok(CreateAccessGrantAnswer {
        grant: view(grant, Utc::now()),
        wireguard_config,
    })
}

/// The grant's wg-quick file: its key and /128, and its gateway as the one
/// peer, routing the overlay /64 (VIP range included), the pod prefix and
/// the network's LAN subnets.
fn wg_quick(
    fleet: &FleetState,
    account: &AccountId,
    grant: &fleet::AccessGrant,
    private_key: Option<&str>,
) -> Result<String, ApiError> {
    let acc = fleet
        .account(account)
        .ok_or_else(|| ApiError::not_found("account", account.as_str()))?;
    let network = acc
        .networks
        .get(&grant.network_id)
        .ok_or_else(|| ApiError::not_found("network", &grant.network_id))?;
    let gateway = acc
        .peers
        .get(&grant.gateway_peer_id)
        .ok_or_else(|| ApiError::not_found("peer", &grant.gateway_peer_id))?;
    let key = acc
        .wireguard_keys
        .get(&gateway.instance_id)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::NoGateway,
                format!(
                    "gateway peer {} has no registered WireGuard key",
                    gateway.id
                ),
            )
        })?;
    let mut allowed: Vec<IpNet> = vec![IpNet::V6(network.overlay_prefix)];
    allowed.extend(network.pod_subnet_prefix);
    for p in acc.peers.values().filter(|p| p.network_id == network.id) {
        allowed.extend(p.lan_subnets.iter().copied());
    }
    allowed.sort();
    allowed.dedup();
    let allowed: Vec<String> = allowed.iter().map(ToString::to_string).collect();
    let expires = grant.expires_at.map_or("never".to_string(), |t| {
        t.to_rfc3339_opts(SecondsFormat::Secs, true)
    });
    let key_line = match private_key {
        Some(k) => format!("PrivateKey = {k}"),
        None => PRIVATE_KEY_PLACEHOLDER.to_string(),
    };
    let lines = [
        format!(
            "# powernode access grant {} ({:?}) to network {} ({}); expires: {expires}",
            grant.id, grant.name, network.id, network.name
        ),
        "[Interface]".to_string(),
        key_line,
        format!("Address = {}/128", grant.address),
        String::new(),
        "[Peer]".to_string(),
        format!(
            "# gateway {} (instance {}): it forwards into the overlay, whichever peer holds a VIP",
            gateway.id, gateway.instance_id
        ),
        format!("PublicKey = {}", key.public_key),
        format!("Endpoint = {}", key.endpoint),
        format!("AllowedIPs = {}", allowed.join(", ")),
        format!("PersistentKeepalive = {PERSISTENT_KEEPALIVE_SECS}"),
    ];
    Ok(lines.join("\n") + "\n")
}

/// `system_sdwan_list_access_grants({network_id?})`.
pub async fn list_access_grants(
    ctx: &ActionContext<'_>,
    a: ListAccessGrantsArgs,
) -> Result<ListAccessGrantsAnswer, ApiError> {
    let account = &ctx.operator.account;
    let fleet = ctx.fleet().await;
    if let Some(id) = &a.network_id {
        if fleet.network(account, id).is_none() {
            return Err(ApiError::not_found("network", id));
        }
    }
    let now = Utc::now();
    let mut grants: Vec<AccessGrant> = fleet
        .account(account)
        .into_iter()
        .flat_map(|acc| acc.grants.values())
        .filter(|g| a.network_id.as_ref().is_none_or(|n| *n == g.network_id))
        .map(|g| view(g, now))
        .collect();
    grants.sort_by(|x, y| (x.created_seq, &x.id).cmp(&(y.created_seq, &y.id)));
    Ok(ListAccessGrantsAnswer { grants })
}

/// Why `grant` cannot be revoked (at `now`), if it cannot.
fn refuse_ended(grant: &fleet::AccessGrant, now: DateTime<Utc>) -> Result<(), ApiError> {
    match grant.ended {
        Some(AccessGrantEnd::Revoked) => Err(ApiError::new(
            ErrorCode::AlreadyRevoked,
            format!(
                "access grant {} is already revoked; nothing changed",
                grant.id
            ),
        )),
        Some(AccessGrantEnd::Expired) => Err(expired(grant)),
        None if !grant.is_active(now) => Err(expired(grant)),
        None => Ok(()),
    }
}

fn expired(grant: &fleet::AccessGrant) -> ApiError {
    let when = grant.expires_at.map_or(String::new(), |t| {
        format!(" at {}", t.to_rfc3339_opts(SecondsFormat::Secs, true))
    });
    ApiError::new(
        ErrorCode::Expired,
        format!(
            "access grant {} expired{when}; it no longer works, nothing to revoke",
            grant.id
        ),
    )
}

/// `system_sdwan_revoke_access_grant({grant_id})`.
pub async fn revoke_access_grant(
    ctx: &ActionContext<'_>,
    a: RevokeAccessGrantArgs,
) -> Result<RevokeAccessGrantAnswer, ApiError> {
    let account = ctx.operator.account.clone();
    let network_id = {
        let fleet = ctx.fleet().await;
        fleet
            .account(&account)
            .and_then(|acc| acc.grants.get(&a.grant_id))
            .map(|g| g.network_id.clone())
            .ok_or_else(|| ApiError::not_found("access grant", &a.grant_id))?
    };
    let aggregate = network_aggregate(&network_id);
    for attempt in 0..GUARDED_ATTEMPTS {
        let last = ctx.log().aggregate_last_seq(&account, &aggregate).await?;
        ctx.wait_for(last.unwrap_or(0)).await?;
        let event = {
            let fleet = ctx.fleet().await;
            let grant = fleet
                .account(&account)
                .and_then(|acc| acc.grants.get(&a.grant_id))
                .ok_or_else(|| ApiError::not_found("access grant", &a.grant_id))?;
            refuse_ended(grant, Utc::now())?;
            end_event(&account, ctx.actor(), grant, AccessGrantEnd::Revoked)
        };
        let expect = last.map_or(Expect::NoEvents, Expect::LastSeq);
        match ctx.append_guarded(&event, expect).await {
            Ok(_) => {
                let fleet = ctx.fleet().await;
                let grant = fleet
                    .account(&account)
                    .and_then(|acc| acc.grants.get(&a.grant_id))
                    .ok_or_else(|| ApiError::not_found("access grant", &a.grant_id))?;
                // The log answers "duplicate" when the expiry (same event
                // id) went first: then the grant expired, not revoked.
                if grant.ended != Some(AccessGrantEnd::Revoked) {
                    return Err(expired(grant));
                }
                return Ok(RevokeAccessGrantAnswer {
                    grant: view(grant, Utc::now()),
                });
            }
            Err(ApiError {
                code: ErrorCode::Conflict,
                ..
            }) => conflict_backoff(attempt).await,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::unavailable(format!(
        "network {network_id} is busy ({GUARDED_ATTEMPTS} concurrent changes went first); retry"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_zero_or_absurd_is_refused_and_none_never_expires() {
        let now = Utc::now();
        assert_eq!(expiry(None, now).expect("no ttl"), None);
        assert_eq!(
            expiry(Some(60), now).expect("a minute"),
            Some(now + chrono::Duration::seconds(60))
        );
        for bad in [0, MAX_TTL_SECS + 1, u64::MAX] {
            let e = expiry(Some(bad), now).expect_err("refused");
            assert_eq!(e.code, ErrorCode::InvalidArguments);
            assert!(e.message.contains("ttl_secs"), "{}", e.message);
        }
    }

    #[test]
    fn a_made_key_pair_matches_and_a_bad_key_is_named() {
        let made = key_pair(None).expect("a key pair");
        let private = made.private.expect("the platform made the private key");
        let bytes: [u8; 32] = powernode_events::wireguard::decode_base64(&private)
            .expect("base64")
            .try_into()
            .expect("32 bytes");
        let public = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(bytes));
        assert_eq!(made.public, encode_base64(public.as_bytes()));
        let brought = key_pair(Some(&made.public)).expect("a good key");
        assert!(brought.private.is_none());
        for bad in ["", "abc", "not base64 at all!", &encode_base64(&[1; 31])] {
            let e = key_pair(Some(bad)).err().expect("refused");
            assert_eq!(e.code, ErrorCode::InvalidArguments);
            assert!(e.message.contains("public_key"), "{}", e.message);
        }
    }
}
