//! Cluster reads: `kubernetes_list_clusters`, `kubernetes_get_cluster`,
//! `kubernetes_list_nodes`, in the runbook's answer shapes.

use super::ActionContext;
use crate::api::error::ApiError;
use powernode_events::AccountId;
use powernode_projections::fleet::{Cluster, ClusterStatus};
use powernode_projections::FleetState;
use serde::Deserialize;
use serde_json::{json, Value};

/// A cluster as operators see it: the runbook's fields plus the details.
fn cluster_json(fleet: &FleetState, account: &AccountId, c: &Cluster) -> Value {
    let mut v = json!(c);
    v["node_count"] = json!(fleet.node_count(account, &c.id));
    v["version"] = json!(c.k3s_version);
    v
}

/// `kubernetes_list_clusters({include_decommissioned?})` → `{clusters: [...]}`, oldest first.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListClusters {
    #[serde(default)]
    include_decommissioned: bool,
}

pub async fn list_clusters(ctx: &ActionContext<'_>, a: ListClusters) -> Result<Value, ApiError> {
    let fleet = ctx.fleet().await;
    let account = &ctx.operator.account;
    let clusters: Vec<Value> = fleet
        .clusters(account, a.include_decommissioned)
        .into_iter()
        .map(|c| cluster_json(&fleet, account, c))
        .collect();
    Ok(json!({ "clusters": clusters }))
}

/// `kubernetes_get_cluster({id})` → `{cluster: {...}}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetCluster {
    id: String,
}

pub async fn get_cluster(ctx: &ActionContext<'_>, a: GetCluster) -> Result<Value, ApiError> {
    let fleet = ctx.fleet().await;
    let account = &ctx.operator.account;
    let c = fleet
        .cluster(account, &a.id)
        .ok_or_else(|| ApiError::not_found("cluster", &a.id))?;
    Ok(json!({ "cluster": cluster_json(&fleet, account, c) }))
}

/// `kubernetes_list_nodes({cluster_id})` → `{nodes: [{instance_id, role, status, version}]}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListNodes {
    cluster_id: String,
}

pub async fn list_nodes(ctx: &ActionContext<'_>, a: ListNodes) -> Result<Value, ApiError> {
    let fleet = ctx.fleet().await;
    let account = &ctx.operator.account;
    let cluster = fleet
        .cluster(account, &a.cluster_id)
        .ok_or_else(|| ApiError::not_found("cluster", &a.cluster_id))?;
    if cluster.status == ClusterStatus::Decommissioned {
        return Ok(json!({ "nodes": [] }));
    }
    Ok(json!({ "nodes": fleet.cluster_nodes(account, &a.cluster_id) }))
}
