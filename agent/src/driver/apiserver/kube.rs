//! The Kubernetes documents the simulated API answers with: version,
//! discovery, nodes (as a `NodeList`, a `Node` or a server-side `Table`),
//! and `Status` errors. Pure functions of the [`ApiState`].

use super::ApiState;
use crate::driver::ClusterNode;
use serde_json::{json, Value};

/// The annotation (and the `Table` column) naming the node that answered.
pub const SERVED_BY: &str = "powernode.io/served-by";
/// The label carrying the platform's instance id of a node.
pub const INSTANCE_LABEL: &str = "powernode.io/instance";

/// `major` and `minor` of a `v1.31.4+k3s1` version (`"1"`, `"31"`).
fn major_minor(version: &str) -> (String, String) {
    let mut parts = version.trim_start_matches('v').split(['.', '+', '-']);
    let major = parts.next().unwrap_or("1").to_owned();
    let minor = parts.next().unwrap_or("0").to_owned();
    (major, minor)
}

/// `GET /version`.
pub fn version(state: &ApiState) -> Value {
    let (major, minor) = major_minor(&state.version);
    json!({
        "major": major,
        "minor": minor,
        "gitVersion": state.version,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2024-12-01T00:00:00Z",
        "goVersion": "go1.22.9",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// `GET /api`.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    })
}

/// `GET /apis`: no API groups besides the core one.
pub fn api_group_list() -> Value {
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
}

/// `GET /api/v1`: the resources served (nodes, and services for
/// `kubectl cluster-info`).
pub fn api_resource_list() -> Value {
    json!({
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [
            {
                "name": "nodes", "singularName": "node", "namespaced": false,
                "kind": "Node", "verbs": ["get", "list"], "shortNames": ["no"],
            },
            {
                "name": "services", "singularName": "service", "namespaced": true,
                "kind": "Service", "verbs": ["get", "list"], "shortNames": ["svc"],
            },
        ],
    })
}

/// An empty `ServiceList` (`kubectl cluster-info` asks for the
/// cluster services of `kube-system`).
pub fn empty_service_list() -> Value {
    json!({"kind": "ServiceList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": []})
}

/// A `Status` failure.
pub fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": {},
        "code": code,
    })
}

/// The nodes to list: the platform's view, with this node added when the
/// platform does not list it yet (a server that answers is a node of its
/// cluster).
pub fn nodes(state: &ApiState) -> Vec<ClusterNode> {
    let mut nodes = state.nodes.clone();
    let me = state.instance_id.as_deref();
    if !nodes
        .iter()
        .any(|n| n.name == state.node_name || Some(n.instance_id.as_str()) == me)
    {
        nodes.push(ClusterNode {
            name: state.node_name.clone(),
            instance_id: state.instance_id.clone().unwrap_or_default(),
            role: "server".into(),
            ready: true,
            overlay_ip: None,
            registered_at: state.started_at.to_rfc3339(),
        });
    }
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    nodes
}

fn roles(node: &ClusterNode) -> &'static str {
    if node.role == "server" {
        "control-plane,etcd,master"
    } else {
        "<none>"
    }
}

fn labels(node: &ClusterNode) -> Value {
    let mut labels = json!({
        "kubernetes.io/hostname": node.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": "k3s",
        INSTANCE_LABEL: node.instance_id,
    });
    if node.role == "server" {
        for role in ["control-plane", "etcd", "master"] {
            labels[format!("node-role.kubernetes.io/{role}")] = json!("true");
        }
    }
    labels
}

/// A deterministic uid for a node (a UUID v5 of its instance and name).
fn uid(node: &ClusterNode) -> String {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("{}/{}", node.instance_id, node.name).as_bytes(),
    )
    .to_string()
}

fn metadata(state: &ApiState, node: &ClusterNode) -> Value {
    json!({
        "name": node.name,
        "uid": uid(node),
        "resourceVersion": "1",
        "creationTimestamp": node.registered_at,
        "labels": labels(node),
        "annotations": {
            SERVED_BY: state.node_name,
            "powernode.io/served-by-instance": state.instance_id.clone().unwrap_or_default(),
        },
    })
}

/// One `Node`.
pub fn node(state: &ApiState, node: &ClusterNode) -> Value {
    let (ready, reason, message) = if node.ready {
        ("True", "KubeletReady", "kubelet is posting ready status")
    } else {
        (
            "Unknown",
            "NodeStatusUnknown",
            "Kubelet stopped posting node status.",
        )
    };
    let mut addresses = Vec::new();
    if let Some(ip) = &node.overlay_ip {
        addresses.push(json!({"type": "InternalIP", "address": ip}));
    }
    addresses.push(json!({"type": "Hostname", "address": node.name}));
    json!({
        "kind": "Node",
        "apiVersion": "v1",
        "metadata": metadata(state, node),
        "spec": {"providerID": format!("k3s://{}", node.name)},
        "status": {
            "conditions": [{
                "type": "Ready",
                "status": ready,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": node.registered_at,
                "lastTransitionTime": node.registered_at,
            }],
            "addresses": addresses,
            "nodeInfo": {
                "kubeletVersion": state.version,
                "kubeProxyVersion": state.version,
                "operatingSystem": "linux",
                "architecture": "amd64",
                "osImage": "powernode simulated k3s",
                "kernelVersion": "simulated",
                "containerRuntimeVersion": "containerd://simulated",
                "machineID": "",
                "systemUUID": uid(node),
                "bootID": "",
            },
        },
    })
}

/// `GET /api/v1/nodes` as a `NodeList`.
pub fn node_list(state: &ApiState) -> Value {
    let items: Vec<Value> = nodes(state).iter().map(|n| node(state, n)).collect();
    json!({
        "kind": "NodeList",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": "1"},
        "items": items,
    })
}

/// kubectl's age format: `45s`, `12m`, `5h`, `3d`.
pub fn age(since: &str, now: chrono::DateTime<chrono::Utc>) -> String {
    let Ok(since) = chrono::DateTime::parse_from_rfc3339(since) else {
        return "<unknown>".into();
    };
    let secs = (now - since.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn column(name: &str, format: &str, priority: u8, description: &str) -> Value {
    json!({
        "name": name,
        "type": "string",
        "format": format,
        "description": description,
        "priority": priority,
    })
}

/// `nodes` as a server-side `Table` (meta.k8s.io/v1), with the columns
/// `kubectl get nodes` shows (and `-o wide` adds), plus `Served-By`.
pub fn node_table(state: &ApiState, nodes: &[ClusterNode]) -> Value {
    let now = chrono::Utc::now();
    let columns = vec![
        column("Name", "name", 0, "The node's name."),
        column("Status", "", 0, "The node's readiness."),
        column("Roles", "", 0, "The node's roles."),
        column("Age", "", 0, "Time since the node registered."),
        column("Version", "", 0, "Kubelet version."),
        column("Served-By", "", 0, "The node whose API server answered."),
        column("Internal-IP", "", 1, "The node's overlay address."),
        column("External-IP", "", 1, "External address."),
        column("OS-Image", "", 1, "OS image."),
        column("Kernel-Version", "", 1, "Kernel version."),
        column("Container-Runtime", "", 1, "Container runtime."),
    ];
    let rows: Vec<Value> = nodes
        .iter()
        .map(|n| {
            let status = if n.ready { "Ready" } else { "NotReady" };
            json!({
                "cells": [
                    n.name,
                    status,
                    roles(n),
                    age(&n.registered_at, now),
                    state.version,
                    state.node_name,
                    n.overlay_ip.clone().unwrap_or_else(|| "<none>".into()),
                    "<none>",
                    "powernode simulated k3s",
                    "simulated",
                    "containerd://simulated",
                ],
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": metadata(state, n),
                },
            })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": "1"},
        "columnDefinitions": columns,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_split_like_kubernetes() {
        assert_eq!(major_minor("v1.31.4+k3s1"), ("1".into(), "31".into()));
        assert_eq!(major_minor("v1.30.5+k3s1"), ("1".into(), "30".into()));
    }

    #[test]
    fn ages_read_like_kubectl() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-02T00:00:00Z")
            .map(|t| t.with_timezone(&chrono::Utc))
            .expect("a valid time");
        assert_eq!(age("2026-01-01T23:59:15Z", now), "45s");
        assert_eq!(age("2026-01-01T23:00:00Z", now), "60m");
        assert_eq!(age("2026-01-01T00:00:00Z", now), "24h");
        assert_eq!(age("2025-12-20T00:00:00Z", now), "13d");
        assert_eq!(age("yesterday", now), "<unknown>");
    }
}
