//! Operator access grants: `system_sdwan_create_access_grant`,
//! `system_sdwan_list_access_grants`, `system_sdwan_revoke_access_grant`.
//!
//! A grant is a plain WireGuard peer for an operator's machine: an overlay
//! /128 of the network and one tunnel to the network's gateway peer, which
//! forwards into the overlay. The answer of a creation carries a wg-quick
//! file; when the platform made the key pair, that file is the only place
//! the private key is ever written.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::net::Ipv6Addr;

/// The longest a grant may live: 366 days.
pub const MAX_TTL_SECS: u64 = 366 * 24 * 60 * 60;

/// The line a grant's wg-quick file carries instead of `PrivateKey = …`
/// when the operator brought the key: whoever holds the private key puts
/// `PrivateKey = <key>` in its place (the CLI does).
pub const PRIVATE_KEY_PLACEHOLDER: &str =
    "# PrivateKey = <the private key of this grant's public key; fill it in>";

/// Arguments of `system_sdwan_create_access_grant`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccessGrantArgs {
    /// The network to reach.
    pub network_id: String,
    /// Human name, 1-128 characters, e.g. `laptop`.
    pub name: String,
    /// Base64 of the grant's 32-byte x25519 public key (`wg pubkey`
    /// prints one). Without it the platform makes the key pair and the
    /// answer's config holds the private key (the only copy).
    #[serde(default)]
    pub public_key: Option<String>,
    /// Seconds until the grant stops working (1 to [`MAX_TTL_SECS`]);
    /// without it, it works until revoked.
    #[serde(default)]
    pub ttl_secs: Option<u64>,
}

/// Answer of `system_sdwan_create_access_grant`. Its `Debug` leaves the
/// config out (it may hold a private key).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CreateAccessGrantAnswer {
    /// The new grant.
    pub grant: AccessGrant,
    /// A wg-quick file: `[Interface]` with the private key (or
    /// [`PRIVATE_KEY_PLACEHOLDER`] when the caller brought the key) and
    /// the grant's /128, and one `[Peer]`, the gateway.
    pub wireguard_config: String,
}

impl std::fmt::Debug for CreateAccessGrantAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateAccessGrantAnswer")
            .field("grant", &self.grant)
            .field("wireguard_config", &"<hidden>")
            .finish()
    }
}

/// Arguments of `system_sdwan_list_access_grants`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListAccessGrantsArgs {
    /// Only this network's grants.
    #[serde(default)]
    pub network_id: Option<String>,
}

/// Answer of `system_sdwan_list_access_grants`, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ListAccessGrantsAnswer {
    /// The grants, ended ones included.
    pub grants: Vec<AccessGrant>,
}

/// Arguments of `system_sdwan_revoke_access_grant`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeAccessGrantArgs {
    /// Grant id.
    pub grant_id: String,
}

/// Answer of `system_sdwan_revoke_access_grant`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RevokeAccessGrantAnswer {
    /// The grant, now revoked.
    pub grant: AccessGrant,
}

/// Whether a grant still works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccessGrantStatus {
    /// It works.
    Active,
    /// An operator revoked it.
    Revoked,
    /// Its time ran out.
    Expired,
}

impl AccessGrantStatus {
    /// `active`, `revoked` or `expired`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
        }
    }
}

/// An operator access grant (public parts only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AccessGrant {
    /// Grant id.
    pub id: String,
    /// Network id.
    pub network_id: String,
    /// Human name.
    pub name: String,
    /// Base64 of its x25519 public key.
    pub public_key: String,
    /// Its overlay /128.
    pub address: Ipv6Addr,
    /// The peer its tunnel ends at.
    pub gateway_peer_id: String,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// Active, revoked or expired (past `expires_at` counts as expired
    /// even before the expiry is recorded).
    pub status: AccessGrantStatus,
    /// Sequence of the creating event.
    pub created_seq: u64,
}
