//! `GET /ui/fleet?q=&status=&all=&at=`: the account's clusters with their
//! status, endpoint, node count, version and network; filtered on the
//! server (`?q=` a substring of the name, id or endpoint; `?status=`) and,
//! with the script, as one types. Live on cluster, node and VIP events.
//! [`clusters_table`] is the table the time-travel page reuses.

use crate::backend::At;
use crate::layout::{self, Page};
use crate::session::Ctx;
use crate::widgets::{self, badge};
use axum::extract::Query;
use axum::response::Response;
use maud::{html, Markup};
use powernode_actions::clusters::{ClusterView, ListClustersAnswer};
use powernode_actions::sdwan::ListNetworksAnswer;
use powernode_actions::ActionName;
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;

/// The event kinds that change what the fleet shows.
pub const LIVE: &str = "system.k3s.cluster,system.k3s.node,system.k3s.handshake.ready,system.sdwan.virtual_ip,system.sdwan.network";

/// The statuses `?status=` takes.
const STATUSES: &[&str] = &["bootstrapping", "active", "decommissioned"];

/// The fleet page's query.
#[derive(Debug, Default, Deserialize)]
pub struct FleetQuery {
    /// A substring of the name, id or endpoint.
    #[serde(default)]
    pub q: Option<String>,
    /// Only clusters with this status.
    #[serde(default)]
    pub status: Option<String>,
    /// Also show decommissioned clusters (`all=1`).
    #[serde(default)]
    pub all: Option<String>,
    /// What an action that redirected here did.
    #[serde(default)]
    pub done: Option<String>,
    /// What it did it to.
    #[serde(default)]
    pub subject: Option<String>,
}

impl FleetQuery {
    fn text(&self) -> &str {
        self.q.as_deref().map(str::trim).unwrap_or_default()
    }

    fn status(&self) -> Option<&str> {
        self.status
            .as_deref()
            .map(str::trim)
            .filter(|s| STATUSES.contains(s))
    }

    fn include_decommissioned(&self) -> bool {
        self.all
            .as_deref()
            .is_some_and(|a| !a.is_empty() && a != "0")
            || self.status() == Some("decommissioned")
    }

    /// True when `c` passes the filters.
    pub fn matches(&self, c: &ClusterView) -> bool {
        let q = self.text().to_lowercase();
        let text_ok = q.is_empty()
            || [&c.cluster.name, &c.cluster.id, &c.cluster.api_endpoint]
                .iter()
                .any(|s| s.to_lowercase().contains(&q));
        let status_ok = self
            .status()
            .is_none_or(|s| widgets::word(&c.cluster.status) == s);
        text_ok && status_ok
    }
}

/// `GET /ui/fleet`.
pub async fn page(ctx: Ctx, Query(query): Query<FleetQuery>) -> Response {
    let args = json!({ "include_decommissioned": query.include_decommissioned() });
    let (list, networks) = futures::join!(
        ctx.call(ActionName::ListClusters, args),
        ctx.call(ActionName::ListNetworks, json!({}))
    );
    let list: ListClustersAnswer = match list.and_then(super::typed) {
        Ok(l) => l,
        Err(r) => return layout::refusal(&ctx, &r),
    };
    // Network names are a nicety: without them the ids are shown.
    let names: HashMap<String, String> = networks
        .ok()
        .and_then(|v| serde_json::from_value::<ListNetworksAnswer>(v).ok())
        .map(|n| {
            n.networks
                .into_iter()
                .map(|n| (n.network.id, n.network.name))
                .collect()
        })
        .unwrap_or_default();
    let total = list.clusters.len();
    let shown = ListClustersAnswer {
        clusters: list
            .clusters
            .into_iter()
            .filter(|c| query.matches(c))
            .collect(),
        next_page_token: None,
    };
    let body = html! {
        (widgets::flash(query.done.as_deref(), query.subject.as_deref()))
        (filters(&ctx, &query))
        p.muted id="filter-count" aria-live="polite" {
            (shown.clusters.len()) " of " (total) " clusters"
        }
        (clusters_table_named(&ctx, &shown, &names))
        @if total == 0 {
            div.card.empty id="empty" {
                p { strong { "No clusters yet." } }
                @if ctx.at == At::Head {
                    p { "Create one from a template on an SD-WAN network, then watch it appear here:" }
                    pre { code { "powernode create cluster prod-1 --template k3s-prod-server --network tut --wait" } }
                    p.muted { "Or build the tutorial's fleet with " code { "powernode demo --keep" } "." }
                } @else {
                    p.muted { "The account had no clusters at this sequence." }
                }
            }
        } @else if shown.clusters.is_empty() {
            p.card.empty id="empty" { "No cluster matches the filter. " a href=(widgets::href_at(&ctx, "/ui/fleet")) { "Clear it" } }
        }
    };
    layout::page(
        &ctx,
        Page {
            title: "Fleet".to_string(),
            nav: "fleet",
            body,
            live: (ctx.at == At::Head).then(|| LIVE.to_string()),
        },
    )
}

/// The filter form (works without the script; with it, the text filter
/// applies as one types).
fn filters(ctx: &Ctx, query: &FleetQuery) -> Markup {
    html! {
        form.filters id="fleet-filters" method="get" action="/ui/fleet" role="search" {
            @if let At::Seq(seq) = ctx.at {
                input type="hidden" name="at" value=(seq);
            }
            div.field {
                label for="filter" { "Filter" }
                input id="filter" name="q" type="search" value=(query.text())
                    placeholder="name, id or endpoint" autocomplete="off"
                    aria-controls="clusters";
            }
            div.field {
                label for="status" { "Status" }
                select id="status" name="status" {
                    option value="" selected[query.status().is_none()] { "any" }
                    @for s in STATUSES {
                        option value=(s) selected[query.status() == Some(*s)] { (s) }
                    }
                }
            }
            div.field.check {
                input id="all" name="all" type="checkbox" value="1" checked[query.include_decommissioned()];
                label for="all" { "Include decommissioned" }
            }
            button type="submit" { "Apply" }
        }
    }
}

/// The clusters as `table#clusters` (network ids as they are).
pub fn clusters_table(ctx: &Ctx, clusters: &ListClustersAnswer) -> Markup {
    clusters_table_named(ctx, clusters, &HashMap::new())
}

/// The clusters as `table#clusters`, networks by name where `names` knows
/// them. Links keep the request's `?at=`.
pub fn clusters_table_named(
    ctx: &Ctx,
    clusters: &ListClustersAnswer,
    names: &HashMap<String, String>,
) -> Markup {
    html! {
        div.scroll {
            table.data id="clusters" {
                caption.sr-only { "Clusters" }
                thead {
                    tr {
                        th scope="col" { "Name" }
                        th scope="col" { "Status" }
                        th scope="col" { "API endpoint" }
                        th scope="col" { "Nodes" }
                        th scope="col" { "Version" }
                        th scope="col" { "Network" }
                    }
                }
                tbody {
                    @for c in &clusters.clusters {
                        (row(ctx, c, names))
                    }
                }
            }
        }
    }
}

fn row(ctx: &Ctx, c: &ClusterView, names: &HashMap<String, String>) -> Markup {
    let cl = &c.cluster;
    let status = widgets::word(&cl.status);
    let version = c.version.as_deref().or(cl.k3s_version.as_deref());
    html! {
        tr data-cluster-id=(cl.id) data-status=(status) {
            td.name {
                a href=(widgets::href_at(ctx, &format!("/ui/clusters/{}", cl.id))) { (cl.name) }
                br;
                span.muted.small.mono { (cl.id) }
            }
            td.status { (badge(&status)) }
            td.endpoint.mono { (cl.api_endpoint) }
            td.nodes.num { (c.node_count) }
            td.version { (widgets::or_dash(version)) }
            td.network {
                @match &cl.network_id {
                    Some(id) => {
                        @match names.get(id) {
                            Some(name) => { (name) " " span.muted.small.mono { (id) } }
                            None => span.mono { (id) },
                        }
                    }
                    None => span.muted { "—" },
                }
            }
        }
    }
}
