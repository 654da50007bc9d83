//! Cluster secrets: `kubernetes_get_kubeconfig` (audited) and
//! `kubernetes_rotate_join_token`. The secrets come from the secret store;
//! the events carry only fingerprints.
//!
//! A kubeconfig is handed out as the API's, not k3s's: its `server:` is the
//! cluster's endpoint, and its cluster, context and user are named
//! `k3s-<cluster name>` instead of k3s's `default` ([`for_cluster`]), so
//! kubeconfigs of several clusters merge (`KUBECONFIG=a:b kubectl config
//! view --merge --flatten`) without one silently dropping another.

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

/// Points every `server:` of a kubeconfig at `endpoint`, line by line
/// (for a stored kubeconfig that is not YAML; [`for_cluster`] otherwise).
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

/// The name of cluster `cluster_name`'s cluster, context and user in the
/// kubeconfigs the API hands out.
pub fn kubeconfig_name(cluster_name: &str) -> String {
    format!("k3s-{cluster_name}")
}

/// `kubeconfig` with every cluster's `server` set to `endpoint` (when not
/// empty) and its clusters, contexts and users renamed
/// [`kubeconfig_name`]`(cluster_name)` — a second entry of a list keeps its
/// old name as a suffix (`k3s-prod-<old>`) — with the contexts' references
/// and `current-context` following. Other fields are kept as they are.
pub fn for_cluster(
    kubeconfig: &str,
    cluster_name: &str,
    endpoint: &str,
) -> Result<String, serde_norway::Error> {
    use serde_norway::Value;
    let mut doc: Value = serde_norway::from_str(kubeconfig)?;
    let base = kubeconfig_name(cluster_name);
    // Renames the `name` of each entry of `list`; the old → new names.
    let mut rename = |list: &str| -> Vec<(String, String)> {
        let mut renamed = Vec::new();
        let entries = doc.get_mut(list).and_then(Value::as_sequence_mut);
        for (n, entry) in entries.into_iter().flatten().enumerate() {
            let Some(name) = entry.get_mut("name") else {
                continue;
            };
            let old = name.as_str().unwrap_or_default().to_owned();
            let new = match n {
                0 => base.clone(),
                _ => format!("{base}-{old}"),
            };
            *name = Value::String(new.clone());
            renamed.push((old, new));
        }
        renamed
    };
    let clusters = rename("clusters");
    let users = rename("users");
    let contexts = rename("contexts");
    let renamed = |map: &[(String, String)], old: &Value| {
        let old = old.as_str()?;
        map.iter()
            .find(|(o, _)| o == old)
            .map(|(_, new)| Value::String(new.clone()))
    };
    if let Some(list) = doc.get_mut("contexts").and_then(Value::as_sequence_mut) {
        for context in list.iter_mut().filter_map(|c| c.get_mut("context")) {
            for (field, map) in [("cluster", &clusters), ("user", &users)] {
                if let Some(value) = context.get_mut(field) {
                    if let Some(new) = renamed(map, value) {
                        *value = new;
                    }
                }
            }
        }
    }
    if let Some(current) = doc.get_mut("current-context") {
        if let Some(new) = renamed(&contexts, current) {
            *current = new;
        }
    }
    if !endpoint.is_empty() {
        if let Some(list) = doc.get_mut("clusters").and_then(Value::as_sequence_mut) {
            for cluster in list.iter_mut().filter_map(|c| c.get_mut("cluster")) {
                if let Some(server) = cluster.get_mut("server") {
                    *server = Value::String(endpoint.to_owned());
                }
            }
        }
    }
    serde_norway::to_string(&doc)
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
    let raw = String::from_utf8_lossy(&raw);
    let kubeconfig = for_cluster(&raw, &cluster.name, &cluster.api_endpoint).unwrap_or_else(|e| {
        tracing::warn!(cluster = %cluster.id, error = %e, "the stored kubeconfig is not a YAML kubeconfig; handing it out with only its server rewritten");
        with_server(&raw, &cluster.api_endpoint)
    });
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What k3s writes (`/etc/rancher/k3s/k3s.yaml`).
    const K3S_YAML: &str = "apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUI=
    server: https://127.0.0.1:6443
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
preferences: {}
users:
- name: default
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
";

    #[test]
    fn names_become_the_clusters_and_the_server_its_endpoint() {
        let out = for_cluster(K3S_YAML, "prod", "https://[fd00:abcd:1::100]:6443").expect("YAML");
        let doc: serde_norway::Value = serde_norway::from_str(&out).expect("re-parses");
        assert_eq!(doc["clusters"][0]["name"].as_str(), Some("k3s-prod"));
        assert_eq!(doc["users"][0]["name"].as_str(), Some("k3s-prod"));
        assert_eq!(doc["contexts"][0]["name"].as_str(), Some("k3s-prod"));
        assert_eq!(
            doc["contexts"][0]["context"]["cluster"].as_str(),
            Some("k3s-prod")
        );
        assert_eq!(
            doc["contexts"][0]["context"]["user"].as_str(),
            Some("k3s-prod")
        );
        assert_eq!(doc["current-context"].as_str(), Some("k3s-prod"));
        // Kept as they were.
        assert_eq!(doc["kind"].as_str(), Some("Config"));
        assert_eq!(
            doc["users"][0]["user"]["client-key-data"].as_str(),
            Some("S0VZ")
        );
        assert!(out.contains(
            "certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUI=\n"
        ));
        // Plain `key: value` lines, as tools grepping kubeconfigs expect.
        assert!(
            out.contains("    server: https://[fd00:abcd:1::100]:6443\n"),
            "{out}"
        );
        assert!(!out.contains("default"), "{out}");
    }

    #[test]
    fn several_entries_stay_distinct_and_references_follow() {
        let two = "clusters:
- cluster: {server: 'https://a:6443'}
  name: default
- cluster: {server: 'https://b:6443'}
  name: other
contexts:
- context: {cluster: other, user: admin}
  name: ctx
users:
- name: admin
  user: {token: t}
current-context: ctx
";
        let out = for_cluster(two, "staging", "").expect("YAML");
        let doc: serde_norway::Value = serde_norway::from_str(&out).expect("re-parses");
        assert_eq!(
            doc["clusters"][1]["name"].as_str(),
            Some("k3s-staging-other")
        );
        assert_eq!(
            doc["clusters"][1]["cluster"]["server"].as_str(),
            Some("https://b:6443")
        );
        assert_eq!(
            doc["contexts"][0]["context"]["cluster"].as_str(),
            Some("k3s-staging-other")
        );
        assert_eq!(
            doc["contexts"][0]["context"]["user"].as_str(),
            Some("k3s-staging")
        );
        assert_eq!(doc["current-context"].as_str(), Some("k3s-staging"));
    }

    #[test]
    fn what_is_not_yaml_is_an_error() {
        assert!(for_cluster("clusters: [", "prod", "https://x:6443").is_err());
    }
}
