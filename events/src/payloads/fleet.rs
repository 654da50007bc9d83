//! Accounts, operator tokens, templates, nodes, instances and their agents.

payload! {
    /// A tenant account was created.
    pub struct AccountCreated {
        /// The new account's id.
        pub account_id: String,
        /// Human name.
        pub name: String,
    }
}

payload! {
    /// An operator token was issued. The token itself lives in the secret store.
    pub struct OperatorTokenIssued {
        /// Token id (shown in `Actor::Operator`).
        pub token_id: String,
        /// Permissions granted, e.g. `system.kubernetes_provision`.
        pub permissions: Vec<String>,
        /// `sha256:<hex>` of the token secret.
        pub fingerprint: String,
        /// When the token stops being accepted (RFC 3339); absent: never.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub expires_at: Option<String>,
    }
}

payload! {
    /// An operator token was revoked.
    pub struct OperatorTokenRevoked {
        /// Token id.
        pub token_id: String,
    }
}

payload! {
    /// A node template was created.
    pub struct TemplateCreated {
        /// Template id.
        pub template_id: String,
        /// Human name.
        pub name: String,
    }
}

payload! {
    /// A node was defined.
    pub struct NodeCreated {
        /// Node id.
        pub node_id: String,
        /// Hostname, e.g. `k3s-prod-server-1`.
        pub hostname: String,
        /// Template the node follows.
        pub template_id: String,
        /// Memory in MiB; decides the CNI profile (>= 4096 is heavyweight).
        pub memory_mb: u64,
    }
}

payload! {
    /// The CNI plugin of an instance.
    pub enum CniPlugin {
        /// flannel (lightweight nodes).
        Flannel,
        /// ovn-kubernetes (heavyweight nodes, >= 4 GiB).
        OvnKubernetes,
    }
}

payload! {
    /// A node instance was provisioned; its agent may now enroll.
    pub struct InstanceProvisioned {
        /// Instance id.
        pub instance_id: String,
        /// Node it runs on.
        pub node_id: String,
        /// Template it follows.
        pub template_id: String,
        /// Explicit CNI choice, if the operator made one.
        pub cni_plugin: Option<CniPlugin>,
        /// `sha256:<hex>` of the enrollment credential (the secret is in the store).
        pub enrollment_fingerprint: String,
    }
}

payload! {
    /// An instance's agent enrolled its ed25519 identity key.
    pub struct AgentEnrolled {
        /// Instance id.
        pub instance_id: String,
        /// Hex of the 32-byte ed25519 public key; later agent events are verified with it.
        pub public_key: String,
    }
}

payload! {
    /// An instance was drained (planned maintenance).
    pub struct InstanceDrained {
        /// Instance id.
        pub instance_id: String,
    }
}

payload! {
    /// An instance was terminated.
    pub struct InstanceTerminated {
        /// Instance id.
        pub instance_id: String,
    }
}

payload! {
    /// An agent's submission was refused at intake (bad signature, another
    /// instance's identity, a replay, an unknown instance, a bad payload).
    pub struct AgentSubmissionRejected {
        /// The instance the submission claimed to come from.
        pub instance_id: String,
        /// Kind of the submitted event, when it could be read.
        pub kind: Option<String>,
        /// Id of the submitted event, when it could be read.
        pub event_id: Option<String>,
        /// Why.
        pub reason: String,
    }
}
