//! The K3s module, handshake and cluster lifecycle.

use super::fleet::CniPlugin;
use ipnet::IpNet;
use std::collections::BTreeMap;

payload! {
    /// Which k3s module.
    #[derive(Hash, PartialOrd, Ord)]
    pub enum K3sModule {
        /// `k3s-server`: bootstraps a cluster, or joins one as control plane.
        #[serde(rename = "k3s-server")]
        K3sServer,
        /// `k3s-agent`: a worker.
        #[serde(rename = "k3s-agent")]
        K3sAgent,
    }
}

impl K3sModule {
    /// Both modules.
    pub const ALL: [K3sModule; 2] = [Self::K3sServer, Self::K3sAgent];

    /// The module name, `k3s-server` or `k3s-agent`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::K3sServer => "k3s-server",
            Self::K3sAgent => "k3s-agent",
        }
    }

    /// The catalog id, `mod-k3s-server` or `mod-k3s-agent`.
    pub const fn module_id(self) -> &'static str {
        match self {
            Self::K3sServer => "mod-k3s-server",
            Self::K3sAgent => "mod-k3s-agent",
        }
    }

    /// The id of version `version` of this module: `v-k3s-<version>` for
    /// the server module (the seed's `v-k3s-1.31.0`), `v-k3s-agent-<version>`
    /// for the agent module.
    pub fn version_id(self, version: &str) -> String {
        match self {
            Self::K3sServer => format!("v-k3s-{version}"),
            Self::K3sAgent => format!("v-k3s-agent-{version}"),
        }
    }
}

payload! {
    /// Module configuration as the operator gave it.
    pub struct ModuleConfig {
        /// The cluster to join; absent on a bootstrap server.
        pub target_cluster_id: Option<String>,
        /// Other keys, kept verbatim.
        pub extra: BTreeMap<String, String>,
    }
}

payload! {
    /// A k3s module was assigned to a template.
    pub struct ModuleAssigned {
        /// Assignment id.
        pub assignment_id: String,
        /// Template id.
        pub template_id: String,
        /// Module name.
        pub module_name: K3sModule,
        /// Configuration.
        pub config: ModuleConfig,
        /// The catalog version it pins (`v-k3s-1.31.0`); absent: the
        /// newest at assignment time, or unpinned when the catalog has none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub module_version_id: Option<String>,
        /// Only this instance of the template (provision_cluster's
        /// bootstrap server); absent: every instance of the template.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub instance_id: Option<String>,
    }
}

payload! {
    /// An agent started installing k3s.
    pub struct RuntimeInstalling {
        /// Instance id.
        pub instance_id: String,
        /// Module.
        pub module_name: K3sModule,
        /// k3s version being installed, e.g. `v1.30.5+k3s1`.
        pub version: String,
    }
}

payload! {
    /// A bootstrap server reports k3s up with kubeconfig and tokens generated.
    pub struct HandshakeBootstrap {
        /// Instance id.
        pub instance_id: String,
        /// k3s version.
        pub k3s_version: String,
        /// `sha256:<hex>` of the node token (secret kept in the store).
        pub node_token_fingerprint: String,
        /// `sha256:<hex>` of the admin kubeconfig (secret kept in the store).
        pub kubeconfig_fingerprint: String,
    }
}

payload! {
    /// An agent asks to join a cluster.
    pub struct HandshakeJoinRequest {
        /// Instance id.
        pub instance_id: String,
        /// The module (server joins as control plane, agent as worker).
        pub module_name: K3sModule,
        /// Requested cluster; empty = most recent active cluster in the account.
        pub target_cluster_id: Option<String>,
    }
}

payload! {
    /// A join token was issued to an agent (the token went to the agent, not here).
    pub struct JoinTokenIssued {
        /// Instance id.
        pub instance_id: String,
        /// Cluster joined.
        pub cluster_id: String,
        /// Endpoint to join, e.g. `https://[fd00:abcd:1::100]:6443`.
        pub api_endpoint: String,
        /// `sha256:<hex>` of the token.
        pub token_fingerprint: String,
    }
}

payload! {
    /// A join request was refused.
    pub struct JoinRejected {
        /// Instance id.
        pub instance_id: String,
        /// The cluster asked for, if any.
        pub target_cluster_id: Option<String>,
        /// Why (`cluster_not_found`, `wrong_account`, `cluster_not_active`, …).
        pub reason: String,
    }
}

payload! {
    /// An agent reports its k3s node ready.
    pub struct HandshakeReady {
        /// Instance id.
        pub instance_id: String,
        /// Cluster it is ready in.
        pub cluster_id: String,
        /// Kubernetes node name.
        pub node_name: String,
        /// k3s version.
        pub k3s_version: String,
        /// `sha256:<hex>` of the join token the node joined with (absent on
        /// the bootstrap server); a token rotated since then is refused.
        #[serde(default)]
        pub token_fingerprint: Option<String>,
    }
}

payload! {
    /// A bootstrap report was refused (the instance may not create a cluster).
    pub struct BootstrapRejected {
        /// Instance id.
        pub instance_id: String,
        /// Why (`not_a_bootstrap_server`, `already_in_cluster`, …).
        pub reason: String,
    }
}

payload! {
    /// A cluster's join token was rotated; the old token no longer joins.
    pub struct JoinTokenRotated {
        /// Cluster id.
        pub cluster_id: String,
        /// `sha256:<hex>` of the new token (the token is in the secret store).
        pub token_fingerprint: String,
    }
}

payload! {
    /// A cluster was created by its bootstrap server.
    pub struct ClusterBootstrapped {
        /// Cluster id.
        pub cluster_id: String,
        /// Cluster name.
        pub name: String,
        /// The bootstrap server.
        pub bootstrap_instance_id: String,
        /// `https://[vip]:6443`, or the instance /128 when no VIP could be had.
        pub api_endpoint: String,
        /// SD-WAN network of the bootstrap server, if any.
        pub network_id: Option<String>,
        /// CNI profile.
        pub cni_plugin: CniPlugin,
        /// Pod CIDR stamped from the network's `pod_subnet_prefix` (flannel only).
        #[serde(default, with = "crate::payloads::text::option")]
        #[cfg_attr(feature = "schema", schemars(with = "Option<IpNet>"))]
        pub pod_cidr: Option<IpNet>,
        /// Extra k3s server flags (e.g. `--flannel-iface=wg-sdwan-<handle>`).
        pub server_flags: Vec<String>,
        /// `sha256:<hex>` of the cluster's join token (from the bootstrap report).
        #[serde(default)]
        pub join_token_fingerprint: String,
    }
}

payload! {
    /// A cluster became active (its bootstrap server is ready).
    pub struct ClusterActivated {
        /// Cluster id.
        pub cluster_id: String,
    }
}

payload! {
    /// A node's role in a cluster.
    pub enum NodeRole {
        /// control plane (k3s-server).
        #[serde(rename = "control-plane")]
        ControlPlane,
        /// worker (k3s-agent).
        Worker,
    }
}

payload! {
    /// A Kubernetes node row was registered in a cluster.
    pub struct NodeRegistered {
        /// Cluster id.
        pub cluster_id: String,
        /// Instance id.
        pub instance_id: String,
        /// Role.
        pub role: NodeRole,
    }
}

payload! {
    /// A cluster was decommissioned; its node rows are gone, its instances are kept.
    pub struct ClusterDecommissioned {
        /// Cluster id.
        pub cluster_id: String,
        /// Virtual IP released with it, if any.
        pub released_virtual_ip_id: Option<String>,
    }
}

payload! {
    /// ovn-kubernetes ignores the network's `pod_subnet_prefix`.
    pub struct PodSubnetPrefixIgnored {
        /// Cluster id.
        pub cluster_id: String,
        /// Network id.
        pub network_id: String,
        /// The ignored prefix.
        #[serde(with = "crate::payloads::text")]
        #[cfg_attr(feature = "schema", schemars(with = "IpNet"))]
        pub pod_subnet_prefix: IpNet,
        /// The CNI that ignores it.
        pub cni_plugin: CniPlugin,
    }
}

payload! {
    /// A kubeconfig was handed to an operator (audit; the kubeconfig is not here).
    pub struct KubeconfigRetrieved {
        /// Cluster id.
        pub cluster_id: String,
        /// `sha256:<hex>` of the kubeconfig handed out.
        pub fingerprint: String,
    }
}
