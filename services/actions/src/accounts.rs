//! Accounts and operator tokens: `system_create_account`,
//! `system_create_operator_token`, `system_revoke_operator_token`,
//! `system_list_operator_tokens` (all admin only).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Arguments of `system_create_account`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccountArgs {
    /// Human name, 1-128 characters.
    pub name: String,
}

/// Answer of `system_create_account`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CreateAccountAnswer {
    /// The new account.
    pub account: Account,
}

/// An account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Account {
    /// Account id (`acct-…`).
    pub id: String,
    /// Human name.
    pub name: String,
}

/// Arguments of `system_create_operator_token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOperatorTokenArgs {
    /// The account the token acts in.
    pub account_id: String,
    /// Permission names ([`crate::Permission`]), e.g. `system.kubernetes_provision`.
    pub permissions: Vec<String>,
    /// Seconds until the token expires (1 to ten years); never without.
    #[serde(default)]
    pub ttl_secs: Option<u64>,
}

/// Answer of `system_create_operator_token`: the token, shown this once
/// (only its fingerprint is kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CreateOperatorTokenAnswer {
    /// The bearer token (`pn_…`).
    pub token: String,
    /// Its id (what events name as the actor).
    pub token_id: String,
    /// The account it acts in.
    pub account_id: String,
    /// Its permissions.
    pub permissions: Vec<String>,
    /// When it expires (RFC 3339), or null.
    pub expires_at: Option<String>,
}

/// Arguments of `system_revoke_operator_token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeOperatorTokenArgs {
    /// The token's id (not the token).
    pub token_id: String,
}

/// Answer of `system_revoke_operator_token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RevokeOperatorTokenAnswer {
    /// The token's id.
    pub token_id: String,
    /// The account it belongs to.
    pub account_id: String,
    /// Always true.
    pub revoked: bool,
    /// True when it was revoked before this call (nothing changed).
    pub already_revoked: bool,
}

/// Arguments of `system_list_operator_tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListOperatorTokensArgs {
    /// Only this account's tokens; every account's without.
    #[serde(default)]
    pub account_id: Option<String>,
}

/// Answer of `system_list_operator_tokens`, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ListOperatorTokensAnswer {
    /// The tokens (never a token itself).
    pub tokens: Vec<OperatorTokenView>,
}

/// An operator token as listed: its fingerprint, never the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OperatorTokenView {
    /// Token id.
    pub token_id: String,
    /// The account it acts in.
    pub account_id: String,
    /// Its permissions.
    pub permissions: Vec<String>,
    /// `sha256:<hex>` of the token.
    pub fingerprint: String,
    /// When it expires (RFC 3339), or null.
    pub expires_at: Option<String>,
    /// True once revoked.
    pub revoked: bool,
}

/// Arguments of `system_whoami` (none).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WhoamiArgs {}

/// Answer of `system_whoami`: who the presented token is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WhoamiAnswer {
    /// The account the token acts in (`system` for the bootstrap admin).
    pub account_id: String,
    /// The account's name, when it has one.
    pub account_name: Option<String>,
    /// The token's id (never the token).
    pub token_id: String,
    /// Its permissions.
    pub permissions: Vec<String>,
    /// True for the platform admin (every permission, its own account only
    /// for objects).
    pub admin: bool,
    /// Admin only: the other accounts, with how many clusters and
    /// instances each holds (to tell an operator why their own lists are
    /// empty). Empty for other tokens.
    pub other_accounts: Vec<AccountSummary>,
}

/// An account and how much it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AccountSummary {
    /// Account id.
    pub id: String,
    /// Its name, if known.
    pub name: Option<String>,
    /// Clusters (decommissioned ones included).
    pub clusters: usize,
    /// Instances.
    pub instances: usize,
}
