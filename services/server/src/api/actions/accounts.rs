//! Accounts and operator tokens.

use super::{account_arg, check_name, handlers, new_id, ActionContext};
use crate::api::auth::{fingerprint, new_token, Permission};
use crate::api::error::{ApiError, ErrorCode};
use powernode_actions::accounts::{
    Account, CreateAccountAnswer, CreateAccountArgs, CreateOperatorTokenAnswer,
    CreateOperatorTokenArgs, ListOperatorTokensAnswer, ListOperatorTokensArgs, OperatorTokenView,
    RevokeOperatorTokenAnswer, RevokeOperatorTokenArgs,
};
use powernode_events::payloads::fleet::{
    AccountCreated, OperatorTokenIssued, OperatorTokenRevoked,
};
use powernode_events::{AggregateRef, AggregateType, Envelope};
use powernode_log::Expect;
use powernode_projections::fleet::OperatorToken;

handlers! {
    CreateAccount => create_account,
    CreateOperatorToken => create_operator_token,
    RevokeOperatorToken => revoke_operator_token,
    ListOperatorTokens => list_operator_tokens,
    Whoami => whoami,
}

/// `system_whoami({})` — any token: who it is.
pub async fn whoami(
    ctx: &ActionContext<'_>,
    _: powernode_actions::accounts::WhoamiArgs,
) -> Result<powernode_actions::accounts::WhoamiAnswer, ApiError> {
    use powernode_actions::accounts::{AccountSummary, WhoamiAnswer};
    let op = &ctx.operator;
    let fleet = ctx.fleet().await;
    let admin = op.is_admin();
    let other_accounts = if admin {
        fleet
            .accounts()
            .filter(|(id, _)| **id != op.account)
            .map(|(id, a)| AccountSummary {
                id: id.to_string(),
                name: a.name.clone(),
                clusters: a.clusters.len(),
                instances: a.instances.len(),
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(WhoamiAnswer {
        account_id: op.account.to_string(),
        account_name: fleet.account(&op.account).and_then(|a| a.name.clone()),
        token_id: op.token_id.clone(),
        permissions: op.permissions.clone(),
        admin,
        other_accounts,
    })
}

/// `system_create_account({name})` — admin only.
pub async fn create_account(
    ctx: &ActionContext<'_>,
    a: CreateAccountArgs,
) -> Result<CreateAccountAnswer, ApiError> {
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
    Ok(CreateAccountAnswer {
        account: Account { id, name: a.name },
    })
}

/// The longest `ttl_secs` a token may be given (ten years).
pub const MAX_TTL_SECS: u64 = 10 * 365 * 24 * 3600;

/// `system_create_operator_token({account_id, permissions, ttl_secs?})` —
/// admin only; answers `{token}` once: only its fingerprint is kept. With
/// `ttl_secs` the token is refused (`token_expired`) from `expires_at` on.
pub async fn create_operator_token(
    ctx: &ActionContext<'_>,
    a: CreateOperatorTokenArgs,
) -> Result<CreateOperatorTokenAnswer, ApiError> {
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
        .find(|p| p.parse::<Permission>().is_err())
    {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidArguments,
            format!(
                "unknown permission {bad:?}; known: {}",
                Permission::NAMES.join(", ")
            ),
        ));
    }
    let expires_at = match a.ttl_secs {
        None => None,
        Some(ttl) if (1..=MAX_TTL_SECS).contains(&ttl) => {
            let at = chrono::Utc::now() + chrono::Duration::seconds(ttl as i64);
            Some(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        }
        Some(ttl) => {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidArguments,
                format!("ttl_secs: {ttl} is out of range 1-{MAX_TTL_SECS}"),
            ))
        }
    };
    let token = new_token();
    let token_id = new_id("tok");
    let event = Envelope::new(
        account,
        ctx.actor(),
        OperatorTokenIssued {
            token_id: token_id.clone(),
            permissions: a.permissions.clone(),
            fingerprint: fingerprint(&token),
            expires_at: expires_at.clone(),
        },
    );
    ctx.append(&[event]).await?;
    Ok(CreateOperatorTokenAnswer {
        token,
        token_id,
        account_id: a.account_id,
        permissions: a.permissions,
        expires_at,
    })
}

/// `system_revoke_operator_token({token_id})` — admin only. The token is
/// refused (`token_revoked`) from its next call on. Revoking a revoked token
/// changes nothing; the token making the call cannot revoke itself.
pub async fn revoke_operator_token(
    ctx: &ActionContext<'_>,
    a: RevokeOperatorTokenArgs,
) -> Result<RevokeOperatorTokenAnswer, ApiError> {
    if a.token_id == ctx.operator.token_id {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidArguments,
            "token_id: a token cannot revoke itself; revoke it with another admin token",
        ));
    }
    // Which account holds the token (an id never moves between accounts).
    let account = {
        let fleet = ctx.fleet().await;
        let found = fleet
            .accounts()
            .find_map(|(id, acct)| acct.tokens.get(&a.token_id).map(|_| id.clone()));
        found.ok_or_else(|| ApiError::not_found("operator token", &a.token_id))?
    };
    // The guard first, then the state as of the guard: deciding on an older
    // state would let two racing calls both revoke.
    let aggregate = AggregateRef::new(AggregateType::OperatorToken, a.token_id.clone());
    let guard = ctx.log().aggregate_last_seq(&account, &aggregate).await?;
    ctx.wait_for(guard.unwrap_or(0)).await?;
    let revoked = ctx
        .fleet()
        .await
        .operator_token(&account, &a.token_id)
        .is_some_and(|t| t.revoked);
    if revoked {
        return Ok(RevokeOperatorTokenAnswer {
            token_id: a.token_id,
            account_id: account.as_str().to_string(),
            revoked: true,
            already_revoked: true,
        });
    }
    let event = Envelope::new(
        account.clone(),
        ctx.actor(),
        OperatorTokenRevoked {
            token_id: a.token_id.clone(),
        },
    );
    let already_revoked = match ctx
        .append_guarded(&event, guard.map_or(Expect::NoEvents, Expect::LastSeq))
        .await
    {
        Ok(_) => false,
        // Something was appended to the token meanwhile: a concurrent
        // revocation. Answer once this node has applied it, so the token is
        // refused here from now on, as after our own append.
        Err(e) if e.code == ErrorCode::Conflict => {
            let last = ctx.log().aggregate_last_seq(&account, &aggregate).await?;
            ctx.wait_for(last.unwrap_or(0)).await?;
            let revoked = ctx
                .fleet()
                .await
                .operator_token(&account, &a.token_id)
                .is_some_and(|t| t.revoked);
            if !revoked {
                return Err(e);
            }
            true
        }
        Err(e) => return Err(e),
    };
    Ok(RevokeOperatorTokenAnswer {
        token_id: a.token_id,
        account_id: account.as_str().to_string(),
        revoked: true,
        already_revoked,
    })
}

/// `system_list_operator_tokens({account_id?})` — admin only:
/// `{tokens: [{token_id, account_id, permissions, fingerprint, expires_at, revoked}]}`,
/// never a token itself.
pub async fn list_operator_tokens(
    ctx: &ActionContext<'_>,
    a: ListOperatorTokensArgs,
) -> Result<ListOperatorTokensAnswer, ApiError> {
    let only = a.account_id.as_deref().map(account_arg).transpose()?;
    let fleet = ctx.fleet().await;
    if let Some(id) = &only {
        if fleet.account(id).is_none() {
            return Err(ApiError::not_found("account", id.as_str()));
        }
    }
    let mut tokens: Vec<(&powernode_events::AccountId, &OperatorToken)> = fleet
        .accounts()
        .filter(|(id, _)| only.as_ref().is_none_or(|o| o == *id))
        .flat_map(|(id, acct)| acct.tokens.values().map(move |t| (id, t)))
        .collect();
    tokens.sort_by_key(|(_, t)| t.issued_seq);
    let out: Vec<OperatorTokenView> = tokens
        .into_iter()
        .map(|(id, t)| OperatorTokenView {
            token_id: t.id.clone(),
            account_id: id.as_str().to_string(),
            permissions: t.permissions.clone(),
            fingerprint: t.fingerprint.clone(),
            expires_at: t.expires_at.clone(),
            revoked: t.revoked,
        })
        .collect();
    Ok(ListOperatorTokensAnswer { tokens: out })
}
