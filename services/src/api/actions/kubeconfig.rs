//! Cluster secrets: `kubernetes_get_kubeconfig` (audited) and
//! `kubernetes_rotate_join_token`. The secrets come from the secret store;
//! the events carry only fingerprints.

use super::ActionContext;
use crate::api::auth::{fingerprint, KUBERNETES_KUBECONFIG, KUBERNETES_PROVISION};
use crate::api::error::ApiError;
use crate::secrets::SecretKey;
use axum::http::StatusCode;
use powernode_events::payloads::k3s::{JoinTokenRotated, KubeconfigRetrieved};
use powernode_events::Envelope;
use powernode_projections::fleet::{Cluster, ClusterStatus};
use serde::Deserialize;
use serde_json::{json, Value};

/// The cluster, refused when unknown or decommissioned.
async fn live_cluster(ctx: &ActionContext<'_>, id: &str) -> Result<Cluster, ApiError> {
    let fleet = ctx.fleet().await;
    let c = fleet
        .cluster(&ctx.operator.account, id)
        .ok_or_else(|| ApiError::not_found("cluster", id))?;
    if c.status == ClusterStatus::Decommissioned {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "cluster_decommissioned",
            format!("cluster {id} was decommissioned"),
        ));
    }
    Ok(c.clone())
}

fn secret_key(k: Result<SecretKey, crate::secrets::SecretError>) -> Result<SecretKey, ApiError> {
    k.map_err(|e| ApiError::bad_request("invalid_arguments", e.to_string()))
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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetKubeconfig {
    cluster_id: String,
}

pub async fn get_kubeconfig(ctx: &ActionContext<'_>, a: GetKubeconfig) -> Result<Value, ApiError> {
    ctx.operator.require(KUBERNETES_KUBECONFIG)?;
    let cluster = live_cluster(ctx, &a.cluster_id).await?;
    let key = secret_key(SecretKey::kubeconfig(&ctx.operator.account, &cluster.id))?;
    let raw = ctx
        .secrets()
        .get(&key)
        .await
        .map_err(store_error)?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "kubeconfig_unavailable",
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
    Ok(json!({ "kubeconfig": kubeconfig, "api_endpoint": cluster.api_endpoint }))
}

/// `kubernetes_rotate_join_token({cluster_id})` → `{cluster_id, token_fingerprint}`:
/// a new join token; agents holding the old one are refused with `bad_token`
/// and ask again.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateJoinToken {
    cluster_id: String,
}

pub async fn rotate_join_token(
    ctx: &ActionContext<'_>,
    a: RotateJoinToken,
) -> Result<Value, ApiError> {
    ctx.operator.require(KUBERNETES_PROVISION)?;
    let cluster = live_cluster(ctx, &a.cluster_id).await?;
    let token = powernode_agent::runtime::simulated::new_token();
    let fp = fingerprint(&token);
    let key = secret_key(SecretKey::join_token(&ctx.operator.account, &cluster.id))?;
    ctx.secrets()
        .put(&key, token.as_bytes())
        .await
        .map_err(store_error)?;
    let event = Envelope::new(
        ctx.operator.account.clone(),
        ctx.actor(),
        JoinTokenRotated {
            cluster_id: cluster.id.clone(),
            token_fingerprint: fp.clone(),
        },
    );
    ctx.append(&[event]).await?;
    Ok(json!({ "cluster_id": cluster.id, "token_fingerprint": fp }))
}
