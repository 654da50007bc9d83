//! Clusters: `kubernetes_list_clusters`, `kubernetes_get_cluster`,
//! `kubernetes_list_nodes` in the runbook's answer shapes, and
//! `kubernetes_decommission_cluster`.

use super::{handlers, views, ActionContext, Reply};
use crate::api::error::{ApiError, ErrorCode};
use crate::secrets::SecretKey;
use powernode_actions::clusters::{
    self as typed, DecommissionClusterAnswer, DecommissionClusterArgs, GetClusterAnswer,
    GetClusterArgs, ListClustersAnswer, ListClustersArgs, ListNodesAnswer, ListNodesArgs,
};
use powernode_events::payloads::k3s::ClusterDecommissioned;
use powernode_events::{AccountId, AggregateRef, AggregateType, Envelope, EventPayload};
use powernode_log::Expect;
use powernode_projections::fleet::{Cluster, ClusterStatus, VipStatus};
use powernode_projections::FleetState;

handlers! {
    ListClusters => list_clusters,
    GetCluster => get_cluster,
    ListNodes => list_nodes,
    DecommissionCluster => decommission,
}

/// A cluster as operators see it ([`typed::ClusterView`]), borrowed: what
/// `kubernetes_list_clusters` serializes straight to text.
#[derive(serde::Serialize)]
struct ClusterView<'a> {
    #[serde(flatten)]
    cluster: &'a Cluster,
    node_count: usize,
    version: Option<&'a str>,
}

fn view<'a>(fleet: &FleetState, account: &AccountId, c: &'a Cluster) -> ClusterView<'a> {
    ClusterView {
        cluster: c,
        node_count: fleet.node_count(account, &c.id),
        version: c.k3s_version.as_deref(),
    }
}

fn cluster_view(fleet: &FleetState, account: &AccountId, c: &Cluster) -> typed::ClusterView {
    typed::ClusterView {
        cluster: views::cluster(c),
        node_count: fleet.node_count(account, &c.id),
        version: c.k3s_version.clone(),
    }
}

/// [`ListClustersAnswer`], borrowed.
#[derive(serde::Serialize)]
struct Clusters<'a> {
    clusters: Vec<ClusterView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
}

/// Largest `limit` of `kubernetes_list_clusters`.
const MAX_PAGE: usize = 1000;

/// `kubernetes_list_clusters({include_decommissioned?, limit?, page_token?})`
/// → `{clusters: [...], next_page_token?}`, oldest first, serialized
/// straight to text (a thousand clusters are common; building a `Value`
/// tree for them costs more than the rest). Without `limit` every
/// cluster; with it one page, and a token for the next while more follow.
/// The token is the creation sequence of the page's last cluster, so a
/// cluster created or decommissioned between pages neither shifts nor
/// repeats the others.
pub async fn list_clusters(
    ctx: &ActionContext<'_>,
    a: ListClustersArgs,
) -> Result<Reply<ListClustersAnswer>, ApiError> {
    if let Some(limit) = a.limit {
        if limit == 0 || limit > MAX_PAGE {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidArguments,
                format!("limit: must be 1-{MAX_PAGE}, got {limit}"),
            ));
        }
    }
    let after = a.page_token.as_deref().map(parse_page_token).transpose()?;
    let fleet = ctx.fleet().await;
    let account = &ctx.operator.account;
    let mut all = fleet.clusters(account, a.include_decommissioned);
    if let Some(after) = after {
        all.retain(|c| c.created_seq > after);
    }
    let mut next_page_token = None;
    if let Some(limit) = a.limit {
        if all.len() > limit {
            all.truncate(limit);
            next_page_token = all.last().map(|c| page_token(c.created_seq));
        }
    }
    let out = Clusters {
        clusters: all.into_iter().map(|c| view(&fleet, account, c)).collect(),
        next_page_token,
    };
    let mut buf = Vec::with_capacity(64 + out.clusters.len() * 640);
    serde_json::to_writer(&mut buf, &out)
        .map_err(|e| ApiError::unavailable(format!("cannot serialize the clusters: {e}")))?;
    Ok(Reply::Raw(
        String::from_utf8(buf).expect("serde_json writes UTF-8"),
    ))
}

/// The token of the page that follows the cluster created at `seq`.
fn page_token(seq: u64) -> String {
    format!("c{seq}")
}

/// The creation sequence a page token carries on after.
fn parse_page_token(token: &str) -> Result<u64, ApiError> {
    token
        .strip_prefix('c')
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| {
            ApiError::bad_request(
                ErrorCode::InvalidArguments,
                format!(
                    "page_token: {:?} is not a next_page_token this action answered",
                    super::escape_unsafe(token)
                ),
            )
        })
}

/// `kubernetes_get_cluster({id})` → `{cluster: {...}}`.
pub async fn get_cluster(
    ctx: &ActionContext<'_>,
    a: GetClusterArgs,
) -> Result<GetClusterAnswer, ApiError> {
    let fleet = ctx.fleet().await;
    let account = &ctx.operator.account;
    let c = fleet
        .cluster(account, &a.id)
        .ok_or_else(|| ApiError::not_found("cluster", &a.id))?;
    Ok(GetClusterAnswer {
        cluster: cluster_view(&fleet, account, c),
    })
}

/// `kubernetes_list_nodes({cluster_id})` → `{nodes: [{instance_id, role, status, version}]}`.
pub async fn list_nodes(
    ctx: &ActionContext<'_>,
    a: ListNodesArgs,
) -> Result<ListNodesAnswer, ApiError> {
    let fleet = ctx.fleet().await;
    let account = &ctx.operator.account;
    let cluster = fleet
        .cluster(account, &a.cluster_id)
        .ok_or_else(|| ApiError::not_found("cluster", &a.cluster_id))?;
    if cluster.status == ClusterStatus::Decommissioned {
        return Ok(ListNodesAnswer { nodes: Vec::new() });
    }
    Ok(ListNodesAnswer {
        nodes: fleet
            .cluster_nodes(account, &a.cluster_id)
            .into_iter()
            .map(views::k8s_node)
            .collect(),
    })
}

/// Deletes a cluster's join token, kubeconfig and CA (none there is fine).
async fn delete_cluster_secrets(
    ctx: &ActionContext<'_>,
    account: &AccountId,
    cluster_id: &str,
) -> Result<(), ApiError> {
    for key in [
        SecretKey::join_token(account, cluster_id),
        SecretKey::kubeconfig(account, cluster_id),
        SecretKey::cluster_ca(account, cluster_id),
    ]
    .into_iter()
    .flatten()
    {
        ctx.secrets().delete(&key).await.map_err(|e| {
            tracing::warn!(%key, error = %e, "could not delete a decommissioned cluster's secret");
            ApiError::unavailable(e.to_string())
        })?;
    }
    Ok(())
}

/// `kubernetes_decommission_cluster({cluster_id})`: the cluster's node rows
/// go, its VIP is released, its instances are kept (not terminated), and —
/// once the decommission event is appended — its join token and kubeconfig
/// are deleted from the secret store. A second call is refused with
/// `already_decommissioned` and changes nothing in the log (it deletes the
/// secrets again, so a deletion that failed the first time is retried).
pub async fn decommission(
    ctx: &ActionContext<'_>,
    a: DecommissionClusterArgs,
) -> Result<DecommissionClusterAnswer, ApiError> {
    let account = ctx.operator.account.clone();
    let aggregate = AggregateRef::new(AggregateType::Cluster, a.cluster_id.clone());
    let guard = ctx.log().aggregate_last_seq(&account, &aggregate).await?;
    ctx.wait_for(guard.unwrap_or(0)).await?;
    let (event, nodes) = {
        let fleet = ctx.fleet().await;
        let c = fleet
            .cluster(&account, &a.cluster_id)
            .ok_or_else(|| ApiError::not_found("cluster", &a.cluster_id))?;
        if c.status == ClusterStatus::Decommissioned {
            drop(fleet);
            delete_cluster_secrets(ctx, &account, &a.cluster_id).await?;
            return Err(ApiError::new(
                ErrorCode::AlreadyDecommissioned,
                format!(
                    "cluster {} is already decommissioned; nothing changed",
                    a.cluster_id
                ),
            ));
        }
        let nodes: Vec<String> = fleet
            .cluster_nodes(&account, &c.id)
            .into_iter()
            .map(|n| n.instance_id.clone())
            .collect();
        let vip = fleet
            .cluster_virtual_ip(&account, &c.id)
            .filter(|v| v.status == VipStatus::Allocated)
            .map(|v| v.id.clone());
        let event = Envelope::new(
            account.clone(),
            ctx.actor(),
            ClusterDecommissioned {
                cluster_id: c.id.clone(),
                released_virtual_ip_id: vip,
            },
        );
        (event, nodes)
    };
    let expect = guard.map_or(Expect::NoEvents, Expect::LastSeq);
    let seq = ctx.append_guarded(&event, expect).await?;
    delete_cluster_secrets(ctx, &account, &a.cluster_id)
        .await
        .map_err(|e| {
            ApiError::unavailable(format!(
                "cluster {} was decommissioned (seq {seq}) but its secrets are not deleted yet: {}; \
                 call again to finish",
                a.cluster_id, e.message
            ))
        })?;
    let fleet = ctx.fleet().await;
    let c = fleet
        .cluster(&account, &a.cluster_id)
        .expect("the cluster was just seen");
    let EventPayload::ClusterDecommissioned(p) = &event.payload else {
        unreachable!()
    };
    Ok(DecommissionClusterAnswer {
        cluster: cluster_view(&fleet, &account, c),
        removed_nodes: nodes.len(),
        instances_kept: nodes,
        released_virtual_ip_id: p.released_virtual_ip_id.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_raw_cluster_list_reads_as_the_typed_answer() {
        let all = [
            views::tests::sample_cluster(false),
            views::tests::sample_cluster(true),
        ];
        let raw = serde_json::to_string(&Clusters {
            clusters: all
                .iter()
                .map(|c| ClusterView {
                    cluster: c,
                    node_count: 3,
                    version: c.k3s_version.as_deref(),
                })
                .collect(),
            next_page_token: Some(page_token(7)),
        })
        .unwrap();
        let typed: ListClustersAnswer = serde_json::from_str(&raw).unwrap();
        assert_eq!(
            serde_json::to_value(&typed).unwrap(),
            serde_json::from_str::<serde_json::Value>(&raw).unwrap()
        );
        assert_eq!(typed.clusters[1].cluster, views::cluster(&all[1]));
        assert_eq!(typed.clusters[0].node_count, 3);
        assert_eq!(typed.next_page_token.as_deref(), Some("c7"));
    }

    #[test]
    fn page_tokens_read_back_and_others_are_refused_by_name() {
        assert_eq!(parse_page_token(&page_token(42)).unwrap(), 42);
        for bad in ["", "42", "c", "c-1", "cx", "d42"] {
            let e = parse_page_token(bad).unwrap_err();
            assert!(e.message.contains("page_token"), "{bad}: {}", e.message);
        }
    }
}
