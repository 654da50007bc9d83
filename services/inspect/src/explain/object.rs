//! The object `events explain` is about: finding it in the fold, its JSON
//! view (what state changes are computed on), the paths that make up its
//! key state, and a one-line summary.

use powernode_events::AccountId;
use powernode_projections::fleet::AccountState;
use powernode_projections::FleetState;
use serde::Serialize;
use serde_json::{json, Map, Value};

/// What sort of object an id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    /// A K3s cluster.
    Cluster,
    /// A virtual IP (a cluster's API endpoint).
    VirtualIp,
    /// A node instance.
    Instance,
    /// An approval request.
    Approval,
    /// A node definition.
    Node,
    /// An SD-WAN network.
    Network,
    /// An SD-WAN peer.
    Peer,
    /// A node template.
    Template,
}

impl ObjectKind {
    /// How the kind reads in a sentence (`virtual IP`).
    pub fn label(self) -> &'static str {
        match self {
            Self::Cluster => "cluster",
            Self::VirtualIp => "virtual IP",
            Self::Instance => "instance",
            Self::Approval => "approval",
            Self::Node => "node",
            Self::Network => "network",
            Self::Peer => "peer",
            Self::Template => "template",
        }
    }

    /// The view paths whose change sets the object's key state: the "why"
    /// walks back from the last event that changed one of them.
    pub fn key_paths(self) -> &'static [&'static str] {
        match self {
            Self::Cluster => &["status"],
            Self::VirtualIp => &["holder_peer_id", "generation", "status"],
            Self::Instance => &["status", "k3s_phase", "cluster_id"],
            Self::Approval => &["status"],
            Self::Network => &["pod_subnet_prefix"],
            Self::Template => &["module_assignments"],
            Self::Node | Self::Peer => &[],
        }
    }

    /// True when a change at `path` touches the key state.
    pub fn is_key_path(self, path: &str) -> bool {
        self.key_paths().iter().any(|k| {
            path == *k
                || path
                    .strip_prefix(k)
                    .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
        })
    }
}

/// The kind of object `id` names in `account`, if it names one.
fn kind_in(a: &AccountState, id: &str) -> Option<ObjectKind> {
    if a.clusters.contains_key(id) {
        Some(ObjectKind::Cluster)
    } else if a.virtual_ips.contains_key(id) {
        Some(ObjectKind::VirtualIp)
    } else if a.instances.contains_key(id) {
        Some(ObjectKind::Instance)
    } else if a.approvals.contains_key(id) {
        Some(ObjectKind::Approval)
    } else if a.nodes.contains_key(id) {
        Some(ObjectKind::Node)
    } else if a.networks.contains_key(id) {
        Some(ObjectKind::Network)
    } else if a.peers.contains_key(id) {
        Some(ObjectKind::Peer)
    } else if a.templates.contains_key(id) {
        Some(ObjectKind::Template)
    } else {
        None
    }
}

/// Which account's object `id` is, and what sort (first account in id
/// order that has one).
pub fn locate(state: &FleetState, id: &str) -> Option<(AccountId, ObjectKind)> {
    state
        .accounts()
        .find_map(|(acct, a)| kind_in(a, id).map(|k| (acct.clone(), k)))
}

fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn insert(v: &mut Value, key: &str, x: Value) {
    if let Value::Object(m) = v {
        m.insert(key.to_string(), x);
    }
}

/// The object as JSON, as the fold holds it, with a few fields joined in
/// from elsewhere in the account (a VIP's holder instance, a cluster's node
/// rows and VIP); `null` while it does not exist.
pub fn view(state: &FleetState, account: &AccountId, kind: ObjectKind, id: &str) -> Value {
    let Some(a) = state.account(account) else {
        return Value::Null;
    };
    match kind {
        ObjectKind::Cluster => a.clusters.get(id).map(|c| {
            let mut v = to_value(c);
            let nodes: Map<String, Value> = a
                .k8s_nodes
                .get(id)
                .into_iter()
                .flatten()
                .map(|(inst, n)| (inst.clone(), json!({ "role": n.role, "status": n.status })))
                .collect();
            insert(&mut v, "nodes", Value::Object(nodes));
            insert(&mut v, "virtual_ip_id", json!(a.cluster_vips.get(id)));
            v
        }),
        ObjectKind::VirtualIp => a.virtual_ips.get(id).map(|vip| {
            let mut v = to_value(vip);
            // Promotions are the history the chain already shows, one by one.
            if let Value::Object(m) = &mut v {
                m.remove("promotions");
            }
            let holder = a.peers.get(&vip.holder_peer_id).map(|p| &p.instance_id);
            insert(&mut v, "holder_instance_id", json!(holder));
            v
        }),
        ObjectKind::Instance => a.instances.get(id).map(|i| {
            let mut v = to_value(i);
            let hostname = a.nodes.get(&i.node_id).map(|n| &n.hostname);
            insert(&mut v, "hostname", json!(hostname));
            insert(&mut v, "peers", json!(a.instance_peers.get(id)));
            v
        }),
        ObjectKind::Approval => a.approvals.get(id).map(to_value),
        ObjectKind::Node => a.nodes.get(id).map(to_value),
        ObjectKind::Network => a.networks.get(id).map(to_value),
        ObjectKind::Peer => a.peers.get(id).map(to_value),
        ObjectKind::Template => a.templates.get(id).map(to_value),
    }
    .unwrap_or(Value::Null)
}

/// `peer-x (inst-y)`: a peer with the instance behind it, when known.
pub fn peer_label(state: &FleetState, account: &AccountId, peer_id: &str) -> String {
    match state.account(account).and_then(|a| a.peers.get(peer_id)) {
        Some(p) => format!("{peer_id} ({})", p.instance_id),
        None => peer_id.to_string(),
    }
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("-")
}

/// One line about the object's current state.
pub fn summary(kind: ObjectKind, v: &Value) -> String {
    if v.is_null() {
        return "does not exist at this point".into();
    }
    match kind {
        ObjectKind::VirtualIp => {
            let mut out = format!(
                "{} of cluster {}, {}, held by {} (peer {}) at generation {}",
                s(v, "vip"),
                s(v, "cluster_id"),
                s(v, "status"),
                s(v, "holder_instance_id"),
                s(v, "holder_peer_id"),
                v["generation"]
            );
            if v["holder_silent"] == true {
                out.push_str(&format!(", holder silent since {}", s(v, "silent_since")));
            }
            if let Some(a) = v["pending_proposal"]["approval_id"].as_str() {
                out.push_str(&format!(", waiting for approval {a}"));
            }
            out
        }
        ObjectKind::Cluster => {
            let nodes = v["nodes"].as_object().map_or(0, Map::len);
            format!(
                "{}, {}, {nodes} node(s), endpoint {}",
                s(v, "name"),
                s(v, "status"),
                s(v, "api_endpoint")
            )
        }
        ObjectKind::Instance => format!(
            "{} on {}, {}, k3s phase {}, cluster {}",
            v["id"].as_str().unwrap_or("-"),
            s(v, "hostname"),
            s(v, "status"),
            s(v, "k3s_phase"),
            s(v, "cluster_id")
        ),
        ObjectKind::Approval => {
            let mut out = format!(
                "{} on {}, {}",
                s(v, "action"),
                s(v, "subject"),
                s(v, "status")
            );
            if let Some(by) = actor_text(&v["decided_by"]) {
                out.push_str(&format!(" by {by}"));
            }
            if let Some(r) = v["reason"].as_str() {
                out.push_str(&format!(": {r}"));
            }
            out
        }
        ObjectKind::Node => format!(
            "{}, {} MiB, template {}",
            s(v, "hostname"),
            v["memory_mb"],
            s(v, "template_id")
        ),
        ObjectKind::Network => format!(
            "{}, overlay {}, VIP range {}, pod subnet prefix {}",
            s(v, "name"),
            s(v, "overlay_prefix"),
            s(v, "vip_range"),
            s(v, "pod_subnet_prefix")
        ),
        ObjectKind::Peer => format!(
            "instance {} on network {}, {}",
            s(v, "instance_id"),
            s(v, "network_id"),
            s(v, "overlay_ip")
        ),
        ObjectKind::Template => {
            let modules: Vec<&str> = v["module_assignments"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["module_name"].as_str())
                .collect();
            format!("{}, modules: {}", s(v, "name"), modules.join(", "))
        }
    }
}

/// An actor's JSON (`{"type": "operator", "token_id": …}`) as
/// `operator:tok-…`.
pub fn actor_text(v: &Value) -> Option<String> {
    let t = v.get("type")?.as_str()?;
    let name = v
        .get("token_id")
        .or_else(|| v.get("instance_id"))
        .or_else(|| v.get("name"))?
        .as_str()?;
    let prefix = match t {
        "operator" => "operator",
        "agent" => "agent",
        _ => "service",
    };
    Some(format!("{prefix}:{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_match_whole_segments() {
        let k = ObjectKind::VirtualIp;
        assert!(k.is_key_path("generation"));
        assert!(k.is_key_path("status"));
        assert!(!k.is_key_path("generations"));
        assert!(!k.is_key_path("holder_silent"));
        assert!(ObjectKind::Template.is_key_path("module_assignments[0].config"));
    }

    #[test]
    fn actors_read_like_their_display() {
        let v = json!({"type": "operator", "token_id": "tok-1"});
        assert_eq!(actor_text(&v).as_deref(), Some("operator:tok-1"));
        assert_eq!(actor_text(&Value::Null), None);
    }
}
