//! `agent_introspect`: a platform service's replicas (from the status
//! board, [`crate::status`]) or a node agent (projection + the last
//! heartbeat's report, [`crate::liveness`]).

use super::{handlers, ActionContext};
use crate::api::error::{ApiError, ErrorCode};
use crate::liveness::LastBeat;
use crate::status::{service_named, REPORT_INTERVAL, SERVICES};
use chrono::{DateTime, Utc};
use powernode_actions::introspect::{
    AgentIntrospectAnswer, AgentIntrospectArgs, AgentKind, NodeAgentStatus, NodeModule,
    ServiceReplicaStatus, WireguardRevision,
};
use powernode_events::payloads::k3s::K3sModule;
use powernode_events::AccountId;
use powernode_projections::fleet::{AccountState, Instance};
use powernode_projections::FleetState;
use powernode_runtime::status::StatusReport;

handlers! {
    AgentIntrospect => agent_introspect,
}

async fn agent_introspect(
    ctx: &ActionContext<'_>,
    a: AgentIntrospectArgs,
) -> Result<AgentIntrospectAnswer, ApiError> {
    if let Some(service) = service_named(&a.agent_id) {
        // The head now: a replica that stopped reporting lags by all
        // that was appended since.
        let head = ctx.log().last_seq().await.unwrap_or(0);
        let now = Utc::now();
        let replicas = ctx
            .status()
            .replicas_of(service)
            .iter()
            .map(|r| replica_status(r, head, now))
            .collect();
        return Ok(AgentIntrospectAnswer {
            agent_id: a.agent_id,
            kind: AgentKind::Service,
            replicas,
            node: None,
        });
    }
    let fleet = ctx.fleet().await;
    let account = &ctx.operator.account;
    let found = fleet
        .account(account)
        .and_then(|acct| Some((acct, acct.instances.get(&a.agent_id)?)));
    let Some((acct, instance)) = found else {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!(
                "no agent {:?}: not a service ({}, or sdwan_manager_agent) nor an instance of this account",
                a.agent_id,
                SERVICES.join(", ")
            ),
        ));
    };
    let beat = ctx.liveness().last_beat(&instance.id);
    let seen = Seen {
        beat: beat.as_ref(),
        liveness: ctx.liveness(),
        now: Utc::now(),
    };
    let node = node_status(&fleet, account, acct, instance, &seen);
    Ok(AgentIntrospectAnswer {
        agent_id: a.agent_id,
        kind: AgentKind::Node,
        replicas: Vec::new(),
        node: Some(node),
    })
}

/// One replica as shown, against the log's `head` now.
fn replica_status(r: &StatusReport, head: u64, now: DateTime<Utc>) -> ServiceReplicaStatus {
    let head = head.max(r.log_head_seq);
    let secs = |t: DateTime<Utc>| (now - t).num_milliseconds().max(0) as f64 / 1000.0;
    ServiceReplicaStatus {
        service: r.service.clone(),
        replica: r.replica.clone(),
        status: r.status_at(now, REPORT_INTERVAL).to_string(),
        applied_seq: r.applied_seq,
        log_head_seq: head,
        lag: r.lag(head),
        last_error: r.last_error.clone(),
        checkpoint_age_secs: r.last_checkpoint_at.map(secs),
        uptime_secs: secs(r.started_at),
        reported_at: r.reported_at.to_rfc3339(),
        host: r.host.clone(),
    }
}

/// What this process heard of a node agent.
struct Seen<'a> {
    beat: Option<&'a LastBeat>,
    liveness: &'a crate::liveness::Liveness,
    now: DateTime<Utc>,
}

/// A node agent as the projection and its last beat describe it.
fn node_status(
    fleet: &FleetState,
    account: &AccountId,
    acct: &AccountState,
    instance: &Instance,
    seen: &Seen<'_>,
) -> NodeAgentStatus {
    let (beat, liveness, now) = (seen.beat, seen.liveness, seen.now);
    let report = beat.and_then(|b| b.report.as_ref());
    let hostname = acct
        .nodes
        .get(&instance.node_id)
        .map_or_else(|| instance.node_id.clone(), |n| n.hostname.clone());
    let modules = node_modules(acct, instance, report);
    let wireguard = fleet
        .instance_peers(account, &instance.id)
        .into_iter()
        .filter_map(|p| {
            let network = acct.networks.get(&p.network_id)?;
            Some(WireguardRevision {
                network_id: p.network_id.clone(),
                desired: network.config_seq,
                applied: liveness.applied_revision(&instance.id, &p.network_id),
            })
        })
        .collect();
    let outdated = match beat {
        Some(b) => crate::liveness::outdated::missing_capabilities(acct, instance, b),
        None => instance.outdated_capabilities.clone(),
    };
    NodeAgentStatus {
        instance_id: instance.id.clone(),
        hostname,
        status: text(&instance.status),
        agent_version: beat.map(|_| {
            report.map_or_else(
                || crate::liveness::outdated::UNKNOWN_VERSION.to_string(),
                |r| r.agent_version.clone(),
            )
        }),
        runtime: report.map(|r| r.runtime.clone()),
        capabilities: report.map(|r| r.capabilities.clone()).unwrap_or_default(),
        modules,
        handshake_phase: instance.k3s_phase.as_ref().map(text),
        cluster_id: instance.cluster_id.clone(),
        last_heartbeat_at: beat.map(|b| b.at.to_rfc3339()),
        heartbeat_age_ms: beat.map(|b| (now - b.at).num_milliseconds().max(0) as u64),
        wireguard,
        upgrading: report.and_then(|r| r.upgrading.clone()),
        recent_errors: report
            .map(|r| r.recent_errors.iter().map(|e| e.message.clone()).collect())
            .unwrap_or_default(),
        outdated,
    }
}

/// The modules the platform has the instance on, with what the agent
/// reports running.
fn node_modules(
    acct: &AccountState,
    instance: &Instance,
    report: Option<&powernode_protocol::AgentReport>,
) -> Vec<NodeModule> {
    let assigned: Vec<K3sModule> = acct
        .templates
        .get(&instance.template_id)
        .map(|t| {
            t.assignments_for(&instance.id)
                .iter()
                .map(|a| a.module_name)
                .collect()
        })
        .unwrap_or_default();
    let mut modules: Vec<K3sModule> = assigned;
    for m in report.into_iter().flat_map(|r| &r.modules) {
        if !modules.contains(&m.module_name) {
            modules.push(m.module_name);
        }
    }
    modules
        .into_iter()
        .map(|m| {
            let running = report.and_then(|r| r.modules.iter().find(|x| x.module_name == m));
            NodeModule {
                module_name: m.as_str().to_string(),
                module_version_id: acct
                    .instance_module_version(&instance.id, m)
                    .map(|v| v.id.clone()),
                reported_version_id: running.and_then(|x| x.module_version_id.clone()),
                k3s_version: running.map(|x| x.k3s_version.clone()),
            }
        })
        .collect()
}

/// A snake_case enum's name.
fn text<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}
