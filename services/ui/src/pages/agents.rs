//! `GET /ui/agents?agent=`: agent introspection. `table#agents` lists
//! every replica of the platform services (`agent_introspect` of each
//! service) and the account's node agents (its instances); `?agent=<id>`
//! shows what one node agent says about itself (`section#agent`).

use super::events::{nonblank, typed, wire};
use crate::layout::{self, Page};
use crate::session::{urlencode, Ctx};
use axum::extract::Query;
use axum::response::Response;
use maud::{html, Markup};
use powernode_actions::instances::ListInstancesAnswer;
use powernode_actions::introspect::{AgentIntrospectAnswer, NodeAgentStatus};
use powernode_actions::ActionName;
use serde::Deserialize;
use serde_json::json;

/// The platform services `agent_introspect` answers for.
pub const SERVICES: &[&str] = &[
    "api",
    "sdwan",
    "provisioner",
    "sensor",
    "failover",
    "skills",
];

/// The query of `/ui/agents`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AgentsQuery {
    /// A node agent's instance id to introspect.
    #[serde(default)]
    pub agent: Option<String>,
}

async fn introspect(ctx: &Ctx, id: &str) -> Result<AgentIntrospectAnswer, crate::Refusal> {
    ctx.call_head(ActionName::AgentIntrospect, json!({ "agent_id": id }))
        .await
        .and_then(|v| typed::<AgentIntrospectAnswer>("agent_introspect", v))
}

/// `GET /ui/agents`.
pub async fn page(ctx: Ctx, Query(q): Query<AgentsQuery>) -> Response {
    let mut services = Vec::new();
    for s in SERVICES {
        let r = introspect(&ctx, s).await;
        if let Err(r) = &r {
            if r.needs_login() {
                return layout::refusal(&ctx, r);
            }
        }
        services.push((*s, r));
    }
    let instances = ctx
        .call(ActionName::ListInstances, json!({}))
        .await
        .and_then(|v| typed::<ListInstancesAnswer>("system_list_instances", v));
    let chosen = match nonblank(q.agent) {
        Some(id) => Some((id.clone(), introspect(&ctx, &id).await)),
        None => None,
    };
    let body = html! {
        @if let Some((id, r)) = &chosen {
            section #agent aria-labelledby="agent-h" {
                h2 #agent-h { "Agent " code { (id) } }
                @match r {
                    Ok(a) => (agent_detail(a)),
                    Err(r) => (layout::refusal_box(r)),
                }
            }
        }
        (agents_table(&services, instances.as_ref().ok()))
        @if let Err(r) = &instances { (layout::refusal_box(r)) }
    };
    layout::page(
        &ctx,
        Page {
            title: "Agents".into(),
            nav: "agents",
            body,
            live: None,
        },
    )
}

/// `table#agents`: a row per service replica (or the service's refusal)
/// and a row per node agent with a link to introspect it.
pub fn agents_table(
    services: &[(&str, Result<AgentIntrospectAnswer, crate::Refusal>)],
    instances: Option<&ListInstancesAnswer>,
) -> Markup {
    html! {
        div.scroll {
            table.data #agents {
                caption.sr-only { "Platform services and node agents" }
                thead { tr {
                    th scope="col" { "Agent" } th scope="col" { "Kind" } th scope="col" { "Status" }
                    th scope="col" { "Applied / head (lag)" } th scope="col" { "Host" }
                    th scope="col" { "Reported" } th scope="col" { "Last error" }
                } }
                tbody {
                    @for (name, r) in services {
                        @match r {
                            Ok(a) if a.replicas.is_empty() => tr data-agent=(name) data-kind="service" {
                                td { (name) } td { "service" } td.status { "no replica reported" } td {} td {} td {} td {}
                            },
                            Ok(a) => @for rep in &a.replicas {
                                tr data-agent=(rep.replica) data-kind="service" data-status=(rep.status) {
                                    td { (rep.replica) } td { "service" }
                                    td.status { (rep.status) }
                                    td { (rep.applied_seq) " / " (rep.log_head_seq) " (" (rep.lag) ")" }
                                    td { (rep.host) }
                                    td { (rep.reported_at) }
                                    td { (rep.last_error.as_deref().unwrap_or("")) }
                                }
                            },
                            Err(r) => tr data-agent=(name) data-kind="service" {
                                td { (name) } td { "service" }
                                td.status colspan="5" { span.error data-code=(r.code) { (r.code) ": " (r.message) } }
                            },
                        }
                    }
                    @if let Some(list) = instances {
                        @for i in &list.instances {
                            @let inst = &i.instance;
                            tr data-agent=(inst.id) data-kind="node" data-status=(wire(&inst.status)) {
                                td { a href={ "/ui/agents?agent=" (urlencode(&inst.id)) } { (i.hostname.as_deref().unwrap_or(&inst.id)) } br; span.muted.small { (inst.id) } }
                                td { "node" }
                                td.status { (wire(&inst.status)) }
                                td { "—" } td { "—" } td { "—" }
                                td { (inst.last_join_rejection.as_deref().or(inst.last_bootstrap_rejection.as_deref()).unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// What one agent says about itself.
pub fn agent_detail(a: &AgentIntrospectAnswer) -> Markup {
    html! {
        @if let Some(n) = &a.node { (node_detail(n)) }
        @else if a.replicas.is_empty() { p { "Nothing reported." } }
        @else { p { (a.replicas.len()) " replica(s), listed below." } }
    }
}

fn node_detail(n: &NodeAgentStatus) -> Markup {
    html! {
        dl.kv {
            dt { "Hostname" } dd { (n.hostname) }
            dt { "Status" } dd data-field="status" { (n.status) }
            dt { "Agent version" } dd { (n.agent_version.as_deref().unwrap_or("—")) }
            dt { "Runtime" } dd { (n.runtime.as_deref().unwrap_or("—")) }
            dt { "Cluster" } dd { @match &n.cluster_id {
                Some(c) => a href={ "/ui/clusters/" (urlencode(c)) } { (c) },
                None => "—",
            } }
            dt { "Handshake" } dd { (n.handshake_phase.as_deref().unwrap_or("—")) }
            dt { "Last heartbeat" } dd data-field="heartbeat" {
                (n.last_heartbeat_at.as_deref().unwrap_or("—"))
                @if let Some(ms) = n.heartbeat_age_ms { " (" (ms) " ms ago)" }
            }
            dt { "Upgrading" } dd { (n.upgrading.as_deref().unwrap_or("—")) }
            dt { "Capabilities" } dd { (n.capabilities.join(", ")) }
            @if !n.outdated.is_empty() { dt { "Outdated (missing)" } dd { (n.outdated.join(", ")) } }
            dt { "Modules" } dd { ul { @for m in &n.modules {
                li { (m.module_name) ": platform " (m.module_version_id.as_deref().unwrap_or("—"))
                    ", reported " (m.reported_version_id.as_deref().unwrap_or("—"))
                    @if let Some(k) = &m.k3s_version { " (" (k) ")" } }
            } } }
            dt { "WireGuard" } dd { ul { @for w in &n.wireguard {
                li { (w.network_id) ": desired " (w.desired) ", applied " (w.applied.map(|a| a.to_string()).unwrap_or_else(|| "—".into())) }
            } } }
            @if !n.recent_errors.is_empty() {
                dt { "Recent errors" } dd { ul { @for e in &n.recent_errors { li { (e) } } } }
            }
        }
    }
}

#[cfg(test)]
#[path = "agents_tests.rs"]
mod tests;
