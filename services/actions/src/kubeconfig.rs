//! Cluster secrets: `kubernetes_get_kubeconfig` (audited) and
//! `kubernetes_rotate_join_token`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Arguments of `kubernetes_get_kubeconfig`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetKubeconfigArgs {
    /// Cluster id.
    pub cluster_id: String,
}

/// Answer of `kubernetes_get_kubeconfig`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GetKubeconfigAnswer {
    /// The kubeconfig, its `server:` pointed at the cluster's API endpoint.
    pub kubeconfig: String,
    /// The cluster's API endpoint.
    pub api_endpoint: String,
}

/// Arguments of `kubernetes_rotate_join_token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateJoinTokenArgs {
    /// Cluster id.
    pub cluster_id: String,
}

/// Answer of `kubernetes_rotate_join_token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RotateJoinTokenAnswer {
    /// Cluster id.
    pub cluster_id: String,
    /// `sha256:<hex>` of the new join token.
    pub token_fingerprint: String,
}
