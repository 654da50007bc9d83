//! Accounts and operator tokens.

use super::{account_arg, check_name, new_id, ActionContext};
use crate::api::auth::{fingerprint, new_token, ADMIN, ALL_PERMISSIONS};
use crate::api::error::ApiError;
use powernode_events::payloads::fleet::{AccountCreated, OperatorTokenIssued};
use powernode_events::Envelope;
use serde::Deserialize;
use serde_json::{json, Value};

/// `system_create_account({name})` — admin only.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    name: String,
}

pub async fn create_account(ctx: &ActionContext<'_>, a: CreateAccount) -> Result<Value, ApiError> {
    ctx.operator.require(ADMIN)?;
    check_name("name", &a.name)?;
    let id = new_id("acct");
    let account = account_arg(&id)?;
    let event = Envelope::new(
        account,
        ctx.actor(),
        AccountCreated {
            account_id: id.clone(),
            name: a.name.clone(),
        },
    );
    ctx.append(&[event]).await?;
    Ok(json!({"account": {"id": id, "name": a.name}}))
}

/// `system_create_operator_token({account_id, permissions})` — admin only;
/// answers `{token}` once: only its fingerprint is kept.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateOperatorToken {
    account_id: String,
    permissions: Vec<String>,
}

pub async fn create_operator_token(
    ctx: &ActionContext<'_>,
    a: CreateOperatorToken,
) -> Result<Value, ApiError> {
    ctx.operator.require(ADMIN)?;
    let account = account_arg(&a.account_id)?;
    if ctx
        .fleet()
        .await
        .account(&account)
        .and_then(|s| s.created_seq)
        .is_none()
    {
        return Err(ApiError::not_found("account", &a.account_id));
    }
    if let Some(bad) = a
        .permissions
        .iter()
        .find(|p| !ALL_PERMISSIONS.contains(&p.as_str()))
    {
        return Err(ApiError::bad_request(
            "invalid_arguments",
            format!(
                "unknown permission {bad:?}; known: {}",
                ALL_PERMISSIONS.join(", ")
            ),
        ));
    }
    let token = new_token();
    let token_id = new_id("tok");
    let event = Envelope::new(
        account,
        ctx.actor(),
        OperatorTokenIssued {
            token_id: token_id.clone(),
            permissions: a.permissions.clone(),
            fingerprint: fingerprint(&token),
        },
    );
    ctx.append(&[event]).await?;
    Ok(
        json!({"token": token, "token_id": token_id, "account_id": a.account_id, "permissions": a.permissions}),
    )
}
