//! Accounts and operator tokens.

use super::{AccountState, FleetState};
use powernode_events::payloads::fleet::{
    AccountCreated, OperatorTokenIssued, OperatorTokenRevoked,
};
use powernode_events::AccountId;
use serde::{Deserialize, Serialize};

/// An operator bearer token as the fleet knows it: never the secret, only
/// its fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorToken {
    /// Token id (what `Actor::Operator` carries).
    pub id: String,
    /// Permissions granted, e.g. `system.kubernetes_provision`.
    pub permissions: Vec<String>,
    /// `sha256:<hex>` of the token secret.
    pub fingerprint: String,
    /// True once `system.operator_token.revoked` was seen.
    pub revoked: bool,
    /// Sequence of the issuing event.
    pub issued_seq: u64,
    /// Sequence of the revoking event, if revoked.
    pub revoked_seq: Option<u64>,
    /// When the token stops being accepted (RFC 3339), if it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

impl OperatorToken {
    /// True when the token is not revoked and grants `permission`.
    pub fn allows(&self, permission: &str) -> bool {
        !self.revoked && self.permissions.iter().any(|p| p == permission)
    }
}

/// `system.account.created`: names the account (the account row itself may
/// already exist if other facts about it came first). The account is the one
/// in the payload when it is a valid id, else the envelope's.
pub(super) fn account_created(
    state: &mut FleetState,
    seq: u64,
    envelope_account: &AccountId,
    p: &AccountCreated,
) {
    let id = AccountId::new(p.account_id.clone()).unwrap_or_else(|_| envelope_account.clone());
    let account = state.accounts.entry(id).or_default();
    if account.name.is_none() {
        account.name = Some(p.name.clone());
        account.created_seq = Some(seq);
    }
}

/// `system.operator_token.issued`: records the token and indexes its fingerprint.
pub(super) fn token_issued(
    state: &mut FleetState,
    seq: u64,
    account_id: &AccountId,
    p: &OperatorTokenIssued,
) {
    let account = state.accounts.entry(account_id.clone()).or_default();
    if account.tokens.contains_key(&p.token_id) {
        return;
    }
    account.tokens.insert(
        p.token_id.clone(),
        OperatorToken {
            id: p.token_id.clone(),
            permissions: p.permissions.clone(),
            fingerprint: p.fingerprint.clone(),
            revoked: false,
            issued_seq: seq,
            revoked_seq: None,
            expires_at: p.expires_at.clone(),
        },
    );
    state
        .token_fingerprints
        .entry(p.fingerprint.clone())
        .or_insert_with(|| (account_id.clone(), p.token_id.clone()));
}

/// `system.operator_token.revoked`: marks the token revoked (idempotent).
pub(super) fn token_revoked(account: &mut AccountState, seq: u64, p: &OperatorTokenRevoked) {
    if let Some(token) = account.tokens.get_mut(&p.token_id) {
        if !token.revoked {
            token.revoked = true;
            token.revoked_seq = Some(seq);
        }
    }
}
