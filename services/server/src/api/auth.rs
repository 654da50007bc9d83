//! Operator authentication: bearer tokens scoped to one account and a set of
//! permissions. The log holds only a token's fingerprint; a presented token
//! is hashed and looked up in the API's projection.

use super::error::{ApiError, ErrorCode};
use axum::http::HeaderMap;
use powernode_events::AccountId;
use powernode_projections::FleetState;
use rand::RngCore;

/// The permissions a token may carry (defined in `powernode-actions`).
pub use powernode_actions::Permission;

/// The account the bootstrap admin token belongs to.
pub const SYSTEM_ACCOUNT: &str = "system";

/// An authenticated operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// The account the token is scoped to.
    pub account: AccountId,
    /// The token's id (never the token).
    pub token_id: String,
    /// Its permissions.
    pub permissions: Vec<String>,
}

impl Operator {
    /// True for the bootstrap admin.
    pub fn is_admin(&self) -> bool {
        self.permissions
            .iter()
            .any(|p| p == Permission::Admin.as_str())
    }

    /// Refuses unless the token carries `permission` (or is the admin's).
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if self.is_admin() || self.permissions.iter().any(|p| p == permission.as_str()) {
            Ok(())
        } else {
            Err(ApiError::forbidden(permission.as_str()))
        }
    }
}

/// `sha256:<hex>` of a secret: what events and the projection keep.
pub fn fingerprint(secret: &str) -> String {
    powernode_protocol::fingerprint(secret.as_bytes())
}

/// A fresh random operator token.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("pn_{}", hex::encode(bytes))
}

/// Authenticates the request's `Authorization: Bearer <token>` at `now`:
/// 401 `unauthorized` for a missing or unknown token, `token_revoked` for a
/// revoked one, `token_expired` once its `expires_at` has passed.
pub fn authenticate(headers: &HeaderMap, fleet: &FleetState) -> Result<Operator, ApiError> {
    authenticate_at(headers, fleet, chrono::Utc::now())
}

/// [`authenticate`] at a given time.
pub fn authenticate_at(
    headers: &HeaderMap,
    fleet: &FleetState,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Operator, ApiError> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <token> header"))?
        .to_str()
        .map_err(|_| ApiError::unauthorized("Authorization header is not text"))?;
    let token = value
        .strip_prefix("Bearer ")
        .ok_or_else(|| ApiError::unauthorized("Authorization header must be `Bearer <token>`"))?
        .trim();
    let (account, record) = fleet
        .operator_token_by_fingerprint(&fingerprint(token))
        .ok_or_else(|| ApiError::unauthorized("unknown token"))?;
    if record.revoked {
        return Err(ApiError::new(
            ErrorCode::TokenRevoked,
            format!("token {} was revoked", record.id),
        ));
    }
    if let Some(at) = &record.expires_at {
        // An unreadable expiry counts as expired: fail closed.
        let expired = chrono::DateTime::parse_from_rfc3339(at).map_or(true, |t| t <= now);
        if expired {
            return Err(ApiError::new(
                ErrorCode::TokenExpired,
                format!("token {} expired at {at}", record.id),
            ));
        }
    }
    Ok(Operator {
        account: account.clone(),
        token_id: record.id.clone(),
        permissions: record.permissions.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_stable_and_tokens_random() {
        assert_eq!(fingerprint("x"), fingerprint("x"));
        assert_ne!(new_token(), new_token());
        assert!(fingerprint("x").starts_with("sha256:"));
    }
}
