//! Cluster secrets: `kubernetes_get_kubeconfig` (audited) and
//! `kubernetes_rotate_join_token`. The secrets come from the secret store;
//! the events carry only fingerprints.

use super::{handlers, ActionContext};
use crate::api::auth::fingerprint;
use crate::api::error::{ApiError, ErrorCode};
use crate::secrets::{Created, SecretError, SecretKey, Version};
use powernode_actions::kubeconfig::{
    GetKubeconfigAnswer, GetKubeconfigArgs, RotateJoinTokenAnswer, RotateJoinTokenArgs,
};
use powernode_events::payloads::k3s::{JoinTokenRotated, KubeconfigRetrieved};
use powernode_events::{AggregateRef, AggregateType, Envelope};
use powernode_log::{Expect, LogError};
use powernode_projections::fleet::{Cluster, ClusterStatus};
use std::time::{Duration, Instant};

handlers! {
    GetKubeconfig => get_kubeconfig,
    RotateJoinToken => rotate_join_token,
}

/// The cluster, refused when unknown or decommissioned.
async fn live_cluster(ctx: &ActionContext<'_>, id: &str) -> Result<Cluster, ApiError> {
    let fleet = ctx.fleet().await;
    let c = fleet
        .cluster(&ctx.operator.account, id)
        .ok_or_else(|| ApiError::not_found("cluster", id))?;
    if c.status == ClusterStatus::Decommissioned {
        return Err(ApiError::new(
            ErrorCode::ClusterDecommissioned,
            format!("cluster {id} was decommissioned"),
        ));
    }
    Ok(c.clone())
}

fn secret_key(k: Result<SecretKey, crate::secrets::SecretError>) -> Result<SecretKey, ApiError> {
    k.map_err(|e| ApiError::bad_request(ErrorCode::InvalidArguments, e.to_string()))
}

fn store_error(e: crate::secrets::SecretError) -> ApiError {
    ApiError::unavailable(e.to_string())
}

/// Points every `server:` of a kubeconfig at `endpoint`.
pub fn with_server(kubeconfig: &str, endpoint: &str) -> String {
    kubeconfig
        .lines()
        .map(|line| match line.trim_start().strip_prefix("server:") {
            Some(_) => {
                let indent = &line[..line.len() - line.trim_start().len()];
                format!("{indent}server: {endpoint}")
            }
            None => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// `kubernetes_get_kubeconfig({cluster_id})` → `{kubeconfig, api_endpoint}`.
pub async fn get_kubeconfig(
    ctx: &ActionContext<'_>,
    a: GetKubeconfigArgs,
) -> Result<GetKubeconfigAnswer, ApiError> {
    let cluster = live_cluster(ctx, &a.cluster_id).await?;
    let key = secret_key(SecretKey::kubeconfig(&ctx.operator.account, &cluster.id))?;
    let raw = ctx
        .secrets()
        .get(&key)
        .await
        .map_err(store_error)?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::KubeconfigUnavailable,
                format!("cluster {} has no kubeconfig yet (its bootstrap server has not handed one over)", cluster.id),
            )
        })?;
    let kubeconfig = with_server(&String::from_utf8_lossy(&raw), &cluster.api_endpoint);
    let audit = Envelope::new(
        ctx.operator.account.clone(),
        ctx.actor(),
        KubeconfigRetrieved {
            cluster_id: cluster.id.clone(),
            fingerprint: fingerprint(&kubeconfig),
        },
    );
    ctx.append(&[audit]).await?;
    Ok(GetKubeconfigAnswer {
        kubeconfig,
        api_endpoint: cluster.api_endpoint,
    })
}

/// How long a rotation keeps retrying when others win the race.
pub const ROTATE_WITHIN: Duration = Duration::from_secs(20);
/// How long a stored token may disagree with the log before a rotation
/// takes it over as abandoned (a rotation that stored its token and died
/// before appending its event).
pub const ABANDONED_AFTER: Duration = Duration::from_secs(5);

/// `kubernetes_rotate_join_token({cluster_id})` → `{cluster_id, token_fingerprint}`:
/// a new join token; agents holding the old one are refused with `bad_token`
/// and ask again.
///
/// Atomic against concurrent rotations (and any other write to the
/// cluster): see [`rotate_once`]. A rotation that keeps losing for
/// [`ROTATE_WITHIN`] is answered 409 `conflict`, having changed nothing.
pub async fn rotate_join_token(
    ctx: &ActionContext<'_>,
    a: RotateJoinTokenArgs,
) -> Result<RotateJoinTokenAnswer, ApiError> {
    let key = secret_key(SecretKey::join_token(&ctx.operator.account, &a.cluster_id))?;
    let deadline = Instant::now() + ROTATE_WITHIN;
    // The in-flight (or abandoned) version last seen, and since when.
    let mut dirty: Option<(Version, Instant)> = None;
    let mut attempt: u32 = 0;
    loop {
        match rotate_once(ctx, &a.cluster_id, &key, &mut dirty).await? {
            Some(fp) => {
                return Ok(RotateJoinTokenAnswer {
                    cluster_id: a.cluster_id,
                    token_fingerprint: fp,
                })
            }
            None if Instant::now() < deadline => {
                attempt += 1;
                let jitter = rand::random::<u64>() % 10;
                tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt.min(8)) + jitter))
                    .await;
            }
            None => {
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    format!(
                        "cluster {} kept changing for {ROTATE_WITHIN:?} (other rotations); nothing changed, retry",
                        a.cluster_id
                    ),
                ))
            }
        }
    }
}

/// One attempt at a rotation; `None`: lost a race, nothing changed, try again.
///
/// The stored token is the lock: a rotation reads the cluster's last seq
/// `G` and the fingerprint the log holds at `G`, then the stored token and
/// its version, and goes on only if they match (the store agrees with the
/// log: no other rotation is in flight). It replaces the token only at that
/// version (KV revision / sled compare-and-swap), so of two rotations one
/// writes; while its token is stored and not yet in the log, no other
/// rotation passes the match. It then appends its event guarded by
/// `Expect::LastSeq(G)`. If that append loses (the cluster moved on), it
/// puts the token it read back at its own version, so the store again
/// serves the fingerprint the log holds. A token that disagrees with the
/// log unchanged for [`ABANDONED_AFTER`] (its rotation died between the
/// two writes) is taken over: replaced by a new token whose event then
/// brings log and store together again.
async fn rotate_once(
    ctx: &ActionContext<'_>,
    cluster_id: &str,
    key: &SecretKey,
    dirty: &mut Option<(Version, Instant)>,
) -> Result<Option<String>, ApiError> {
    let account = ctx.operator.account.clone();
    let aggregate = AggregateRef::new(AggregateType::Cluster, cluster_id.to_string());
    let guard = ctx.log().aggregate_last_seq(&account, &aggregate).await?;
    ctx.wait_for(guard.unwrap_or(0)).await?;
    let logged = live_cluster(ctx, cluster_id).await?.join_token_fingerprint;
    let stored = ctx
        .secrets()
        .get_versioned(key)
        .await
        .map_err(store_error)?;
    if let Some((value, version)) = &stored {
        // (A cluster whose log holds no fingerprint agrees only with no token.)
        let agrees = crate::secrets::fingerprint(value) == logged;
        if !agrees {
            match dirty {
                Some((seen, since)) if seen == version => {
                    if since.elapsed() < ABANDONED_AFTER {
                        return Ok(None);
                    }
                    tracing::warn!(%key, "the stored join token disagrees with the log since {ABANDONED_AFTER:?} (a rotation died half-way); replacing it");
                }
                _ => {
                    *dirty = Some((version.clone(), Instant::now()));
                    return Ok(None);
                }
            }
        }
    }
    let token = powernode_protocol::token::new_token();
    let fp = fingerprint(&token);
    let written = match &stored {
        Some((_, version)) => ctx.secrets().update(key, token.as_bytes(), version).await,
        None => match ctx.secrets().create(key, token.as_bytes()).await {
            Ok(Created::Created) => ctx.secrets().get_versioned(key).await.and_then(|v| {
                v.filter(|(value, _)| *value == token.as_bytes())
                    .map(|(_, version)| version)
                    .ok_or_else(|| SecretError::Conflict(format!("{key} changed")))
            }),
            Ok(_) => Err(SecretError::Conflict(format!("{key} was just created"))),
            Err(e) => Err(e),
        },
    };
    let ours = match written {
        Ok(v) => v,
        Err(SecretError::Conflict(_)) => return Ok(None),
        Err(e) => return Err(store_error(e)),
    };
    let event = Envelope::new(
        account.clone(),
        ctx.actor(),
        JoinTokenRotated {
            cluster_id: cluster_id.to_string(),
            token_fingerprint: fp.clone(),
        },
    );
    let expect = guard.map_or(Expect::NoEvents, Expect::LastSeq);
    match ctx.log().append(&event, expect).await {
        Ok(appended) => {
            ctx.wait_for(appended.seq).await?;
            Ok(Some(fp))
        }
        Err(LogError::Conflict { .. }) => {
            // Put back what the log still vouches for.
            let restored = match &stored {
                Some((old, _)) => ctx.secrets().update(key, old, &ours).await.map(|_| ()),
                None => ctx.secrets().delete(key).await,
            };
            if let Err(e) = restored {
                tracing::warn!(%key, error = %e, "could not put back the join token after a lost rotation");
            }
            Ok(None)
        }
        // The append may have landed: keep the token (it is the one the
        // event names if it did; a later rotation repairs it if not).
        Err(e) => Err(e.into()),
    }
}
