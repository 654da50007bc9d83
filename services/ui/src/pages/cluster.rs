//! `GET /ui/clusters/{id}`: one cluster, its nodes and its VIP (see
//! [`super::cluster_vip`]); the kubeconfig download (the action audits
//! it: `system.k3s.kubeconfig.retrieved`) and decommission with the
//! cluster's name typed back.

use super::cluster_vip;
use crate::backend::{At, Refusal};
use crate::layout::{self, csrf_field, Page};
use crate::session::Ctx;
use crate::widgets::{self, badge};
use axum::extract::{Form, Path, Query};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use powernode_actions::clusters::{
    ClusterStatus, ClusterView, GetClusterAnswer, K8sNode, ListNodesAnswer,
};
use powernode_actions::kubeconfig::GetKubeconfigAnswer;
use powernode_actions::ActionName;
use serde::Deserialize;
use serde_json::json;

/// The event kinds that change what a cluster page shows.
pub const LIVE: &str = "system.k3s,system.sdwan,sdwan.,system.approval,system.instance";

/// The cluster page's query.
#[derive(Debug, Default, Deserialize)]
pub struct ClusterQuery {
    /// What an action that redirected here did.
    #[serde(default)]
    pub done: Option<String>,
    /// What it did it to.
    #[serde(default)]
    pub subject: Option<String>,
}

/// `GET /ui/clusters/{id}`.
pub async fn page(ctx: Ctx, Path(id): Path<String>, Query(q): Query<ClusterQuery>) -> Response {
    let (cluster, nodes, vip) = futures::join!(
        ctx.call(ActionName::GetCluster, json!({ "id": id })),
        ctx.call(ActionName::ListNodes, json!({ "cluster_id": id })),
        cluster_vip::load(&ctx, &id),
    );
    let cluster = match cluster.and_then(super::typed::<GetClusterAnswer>) {
        Ok(c) => c.cluster,
        Err(r) => return layout::refusal(&ctx, &r),
    };
    let nodes = match nodes.and_then(super::typed::<ListNodesAnswer>) {
        Ok(n) => n.nodes,
        Err(r) => return layout::refusal(&ctx, &r),
    };
    let body = html! {
        (widgets::flash(q.done.as_deref(), q.subject.as_deref()))
        (summary(&ctx, &cluster))
        (nodes_section(&nodes))
        (cluster_vip::section(&ctx, &vip))
        (danger_zone(&ctx, &cluster))
    };
    layout::page(
        &ctx,
        Page {
            title: format!("Cluster {}", cluster.cluster.name),
            nav: "fleet",
            body,
            live: (ctx.at == At::Head).then(|| LIVE.to_string()),
        },
    )
}

fn summary(ctx: &Ctx, c: &ClusterView) -> Markup {
    let cl = &c.cluster;
    html! {
        p.crumbs { a href=(widgets::href_at(ctx, "/ui/fleet")) { "Fleet" } " / " (cl.name) }
        section.card id="summary" aria-labelledby="summary-h" {
            h2 id="summary-h" { "Summary" }
            dl.kv {
                dt { "Id" } dd.mono data-field="id" { (cl.id) }
                dt { "Status" } dd data-field="status" { (badge(&widgets::word(&cl.status))) }
                dt { "API endpoint" } dd.mono data-field="endpoint" { (cl.api_endpoint) }
                dt { "Version" } dd data-field="version" { (widgets::or_dash(c.version.as_deref().or(cl.k3s_version.as_deref()))) }
                dt { "Nodes" } dd data-field="node_count" { (c.node_count) }
                dt { "Network" } dd.mono data-field="network" { (widgets::or_dash(cl.network_id.as_deref())) }
                dt { "CNI" } dd { (widgets::word(&cl.cni_plugin)) }
                @if let Some(cidr) = &cl.pod_cidr { dt { "Pod CIDR" } dd.mono { (cidr) } }
                dt { "Bootstrap instance" } dd.mono { (cl.bootstrap_instance_id) }
                dt { "Created" } dd { (widgets::seq_link(cl.created_seq)) }
                @if let Some(s) = cl.activated_seq { dt { "Activated" } dd { (widgets::seq_link(s)) } }
                @if let Some(s) = cl.decommissioned_seq { dt { "Decommissioned" } dd { (widgets::seq_link(s)) } }
                dt { "Why" } dd { a href={ "/ui/explain?id=" (crate::session::urlencode(&cl.id)) } { "Explain this cluster" } }
            }
        }
    }
}

fn nodes_section(nodes: &[K8sNode]) -> Markup {
    html! {
        section id="nodes" aria-labelledby="nodes-h" {
            h2 id="nodes-h" { "Nodes" }
            @if nodes.is_empty() {
                p.muted { "No Kubernetes nodes (a decommissioned cluster has none; a new one gets its bootstrap server first)." }
            }
            div.scroll {
                table.data {
                    thead { tr {
                        th scope="col" { "Instance" }
                        th scope="col" { "Node name" }
                        th scope="col" { "Role" }
                        th scope="col" { "Status" }
                        th scope="col" { "Version" }
                        th scope="col" { "Registered" }
                    } }
                    tbody {
                        @for n in nodes {
                            tr data-node-id=(n.instance_id) {
                                td.mono { (n.instance_id) }
                                td { (widgets::or_dash(n.node_name.as_deref())) }
                                td.role { (widgets::word(&n.role)) }
                                td.status { (badge(&widgets::word(&n.status))) }
                                td.version { (widgets::or_dash(n.version.as_deref())) }
                                td { (widgets::seq_link(n.registered_seq)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The kubeconfig link and the decommission form (live head only).
fn danger_zone(ctx: &Ctx, c: &ClusterView) -> Markup {
    let cl = &c.cluster;
    if ctx.at != At::Head || cl.status == ClusterStatus::Decommissioned {
        return html! {};
    }
    html! {
        section.card id="access" aria-labelledby="access-h" {
            h2 id="access-h" { "Access" }
            p {
                a.button id="kubeconfig" href={ "/ui/clusters/" (cl.id) "/kubeconfig" } download={ (filename(&cl.name)) ".kubeconfig" } {
                    "Download kubeconfig"
                }
                " "
                span.muted { "Each download is recorded in the log (" code { "system.k3s.kubeconfig.retrieved" } ")." }
            }
        }
        section.card.danger id="decommission-section" aria-labelledby="decommission-h" {
            h2 id="decommission-h" { "Decommission" }
            p { "Removes the cluster's node rows and releases its virtual IP; its instances are kept. This cannot be undone." }
            form id="decommission" method="post" action={ "/ui/clusters/" (cl.id) "/decommission" } {
                (csrf_field(ctx))
                label for="confirm_name" { "Type the cluster's name, " strong.mono { (cl.name) } ", to confirm" }
                input id="confirm_name" name="confirm_name" type="text" autocomplete="off" spellcheck="false"
                    required data-expect=(cl.name) aria-describedby="confirm-hint";
                p.muted.small id="confirm-hint" { "The button works once the name matches." }
                button.bad type="submit" data-action="decommission" { "Decommission " (cl.name) }
            }
        }
    }
}

/// A cluster name as a safe file name.
fn filename(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.trim_matches('.').is_empty() {
        "cluster".to_string()
    } else {
        s
    }
}

/// The cluster `id` at the live head (what the kubeconfig download and
/// decommission act on; another account's id is the action's `not_found`).
async fn at_head(
    ctx: &Ctx,
    id: &str,
) -> Result<powernode_actions::clusters::Cluster, crate::Refusal> {
    ctx.call_head(ActionName::GetCluster, json!({ "id": id }))
        .await
        .and_then(super::typed::<GetClusterAnswer>)
        .map(|c| c.cluster.cluster)
}

/// `GET /ui/clusters/{id}/kubeconfig`: the kubeconfig as a download.
pub async fn kubeconfig(ctx: Ctx, Path(id): Path<String>) -> Response {
    let cluster = match at_head(&ctx, &id).await {
        Ok(c) => c,
        Err(r) => return layout::refusal(&ctx, &r),
    };
    let answer = match ctx
        .call_head(
            ActionName::GetKubeconfig,
            json!({ "cluster_id": cluster.id }),
        )
        .await
        .and_then(super::typed::<GetKubeconfigAnswer>)
    {
        Ok(a) => a,
        Err(r) => return layout::refusal(&ctx, &r),
    };
    let disposition = format!(
        "attachment; filename=\"{}.kubeconfig\"",
        filename(&cluster.name)
    );
    let mut res = answer.kubeconfig.into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/yaml; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, private"),
    );
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    res
}

/// The decommission form: the cluster's name typed back.
#[derive(Debug, Deserialize)]
pub struct DecommissionForm {
    /// The CSRF token.
    pub csrf: Option<String>,
    /// The cluster's name, typed by the human.
    #[serde(default)]
    pub confirm_name: String,
}

/// `POST /ui/clusters/{id}/decommission`: CSRF first, then the typed name
/// must be the cluster's; only then the action runs.
pub async fn decommission(
    ctx: Ctx,
    Path(id): Path<String>,
    Form(form): Form<DecommissionForm>,
) -> Response {
    if let Err(r) = ctx.check_csrf(form.csrf.as_deref()) {
        return layout::refusal(&ctx, &r);
    }
    let cluster = match at_head(&ctx, &id).await {
        Ok(c) => c,
        Err(r) => return layout::refusal(&ctx, &r),
    };
    let typed = form.confirm_name.trim();
    if typed != cluster.name {
        return layout::refusal(
            &ctx,
            &Refusal::new(
                422,
                "invalid_arguments",
                format!(
                    "the typed name {typed:?} is not the cluster's name {:?}; nothing was done",
                    cluster.name
                ),
            ),
        );
    }
    match ctx
        .call_head(
            ActionName::DecommissionCluster,
            json!({ "cluster_id": cluster.id }),
        )
        .await
    {
        Ok(_) => Redirect::to(&format!(
            "/ui/fleet?all=1&{}",
            widgets::done_query("decommissioned", &cluster.name)
        ))
        .into_response(),
        Err(r) => layout::refusal(&ctx, &r),
    }
}

#[cfg(test)]
mod tests {
    use super::filename;

    #[test]
    fn file_names_keep_only_safe_characters() {
        assert_eq!(filename("prod-1"), "prod-1");
        assert_eq!(filename("a\"b/c d"), "a_b_c_d");
        assert_eq!(filename(".."), "cluster");
    }
}
