//! Views of a rebuilt fleet, account by account: clusters, virtual IPs,
//! networks and approvals as JSON (maps keyed by id, as in the state) and
//! as tables. Everything is ordered by id, so equal states print the same.

use crate::output::{cell, Table};
use powernode_events::AccountId;
use powernode_projections::fleet::AccountState;
use powernode_projections::FleetState;
use serde::Serialize;
use serde_json::{json, Map, Value};

/// Which parts of each account to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Show {
    /// K3s clusters (with their node count).
    Clusters,
    /// SD-WAN virtual IPs.
    Vips,
    /// SD-WAN networks.
    Networks,
    /// Approval requests.
    Approvals,
    /// All four.
    All,
}

impl Show {
    fn includes(self, part: Show) -> bool {
        self == Show::All || self == part
    }
}

/// A value as JSON; the state holds only plain data, which always converts.
fn to_json<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// The selected parts of every account, `{account id: {name, clusters, …}}`.
pub fn json(state: &FleetState, show: Show) -> Value {
    let mut accounts = Map::new();
    for (id, a) in state.accounts() {
        accounts.insert(id.to_string(), account_json(state, id, a, show));
    }
    Value::Object(accounts)
}

fn account_json(state: &FleetState, id: &AccountId, a: &AccountState, show: Show) -> Value {
    let mut out = Map::new();
    out.insert("name".into(), json!(a.name));
    if show.includes(Show::Clusters) {
        let clusters: Map<String, Value> = a
            .clusters
            .iter()
            .map(|(cid, c)| {
                let mut v = to_json(c);
                if let Value::Object(m) = &mut v {
                    m.insert("node_count".into(), json!(state.node_count(id, cid)));
                }
                (cid.clone(), v)
            })
            .collect();
        out.insert("clusters".into(), Value::Object(clusters));
    }
    if show.includes(Show::Vips) {
        out.insert("virtual_ips".into(), to_json(&a.virtual_ips));
    }
    if show.includes(Show::Networks) {
        out.insert("networks".into(), to_json(&a.networks));
    }
    if show.includes(Show::Approvals) {
        out.insert("approvals".into(), to_json(&a.approvals));
    }
    Value::Object(out)
}

/// A serializable value as a table cell (enums as their names).
fn c<T: Serialize>(v: &T) -> String {
    cell(&to_json(v))
}

/// The selected parts of every account as indented tables.
pub fn tables(state: &FleetState, show: Show) -> String {
    let mut out = String::new();
    let mut any = false;
    for (id, a) in state.accounts() {
        any = true;
        let name = a
            .name
            .as_deref()
            .map_or(String::new(), |n| format!(" ({n})"));
        out.push_str(&format!("\naccount {id}{name}\n"));
        if show.includes(Show::Clusters) {
            out.push_str("  clusters\n");
            out.push_str(&clusters(state, id, a).render_indented(4, "none"));
        }
        if show.includes(Show::Vips) {
            out.push_str("  virtual IPs\n");
            out.push_str(&vips(a).render_indented(4, "none"));
        }
        if show.includes(Show::Networks) {
            out.push_str("  networks\n");
            out.push_str(&networks(a).render_indented(4, "none"));
        }
        if show.includes(Show::Approvals) {
            out.push_str("  approvals\n");
            out.push_str(&approvals(a).render_indented(4, "none"));
        }
    }
    if !any {
        out.push_str("\nno accounts\n");
    }
    out
}

fn clusters(state: &FleetState, id: &AccountId, a: &AccountState) -> Table {
    let mut t = Table::new(&[
        "ID", "NAME", "STATUS", "NODES", "ENDPOINT", "NETWORK", "VERSION", "CREATED",
    ]);
    for cl in a.clusters.values() {
        t.row(vec![
            cl.id.clone(),
            cl.name.clone(),
            c(&cl.status),
            state.node_count(id, &cl.id).to_string(),
            cl.api_endpoint.clone(),
            c(&cl.network_id),
            c(&cl.k3s_version),
            format!("#{}", cl.created_seq),
        ]);
    }
    t
}

fn vips(a: &AccountState) -> Table {
    let mut t = Table::new(&[
        "ID",
        "VIP",
        "CLUSTER",
        "STATUS",
        "GEN",
        "HOLDER",
        "SILENT",
        "CANDIDATES",
        "PENDING",
    ]);
    for v in a.virtual_ips.values() {
        t.row(vec![
            v.id.clone(),
            v.vip.to_string(),
            v.cluster_id.clone(),
            c(&v.status),
            v.generation.to_string(),
            v.holder_peer_id.clone(),
            if v.holder_silent { "yes" } else { "no" }.to_string(),
            c(&v.failover_candidates().collect::<Vec<_>>()),
            c(&v.pending_proposal.as_ref().map(|p| &p.approval_id)),
        ]);
    }
    t
}

fn networks(a: &AccountState) -> Table {
    let mut t = Table::new(&[
        "ID",
        "NAME",
        "OVERLAY",
        "VIP RANGE",
        "POD SUBNET",
        "ROUTING",
    ]);
    for n in a.networks.values() {
        t.row(vec![
            n.id.clone(),
            n.name.clone(),
            n.overlay_prefix.to_string(),
            n.vip_range.to_string(),
            c(&n.pod_subnet_prefix),
            c(&n.routing_mode),
        ]);
    }
    t
}

fn approvals(a: &AccountState) -> Table {
    let mut t = Table::new(&[
        "ID",
        "ACTION",
        "SUBJECT",
        "STATUS",
        "REQUESTED",
        "DECIDED",
        "BY",
    ]);
    for ap in a.approvals.values() {
        let by = ap
            .decided_by
            .as_ref()
            .map_or_else(|| "-".to_string(), ToString::to_string);
        t.row(vec![
            ap.id.clone(),
            ap.action.clone(),
            ap.subject.clone(),
            c(&ap.status),
            format!("#{}", ap.requested_seq),
            ap.decided_seq
                .map_or_else(|| "-".into(), |s| format!("#{s}")),
            by,
        ]);
    }
    t
}
