//! One realistic example payload per kind, with fixed ids and timestamps so
//! that generated schema examples are stable. Used by tests, the `schemas`
//! generator and the benchmarks.

use crate::envelope::Envelope;
use crate::ids::{AccountId, Actor};
use crate::kinds::EventPayload;
use crate::payloads::{approvals::*, fleet::*, k3s::*, log::*, mcp::*, sdwan::*, skills::*};
use chrono::{TimeZone, Utc};
use std::collections::BTreeMap;
use uuid::Uuid;

/// The example account.
pub fn example_account() -> AccountId {
    AccountId::new("acct-example").expect("literal is a valid account id")
}

/// Wraps a payload in an envelope with fixed metadata (deterministic bytes).
pub fn example_envelope(payload: impl Into<EventPayload>) -> Envelope {
    let payload = payload.into();
    let id = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001);
    Envelope {
        id,
        account_id: example_account(),
        aggregate: payload.aggregate(),
        occurred_at: Utc
            .with_ymd_and_hms(2026, 11, 21, 12, 0, 0)
            .single()
            .expect("fixed timestamp is valid"),
        actor: Actor::service("provisioner"),
        correlation_id: id,
        causation_id: None,
        payload,
        signature: None,
    }
}

const CLUSTER: &str = "cluster-0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
const INSTANCE: &str = "inst-0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a01";
const VIP: &str = "vip-0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a77";
const EXEC: &str = "exec-0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a99";
const FP: &str = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

/// One example of every kind, in kind-table order.
pub fn example_payloads() -> Vec<EventPayload> {
    let prefix = "10.42.0.0/16".parse().expect("literal prefix");
    vec![
        AccountCreated {
            account_id: "acct-example".into(),
            name: "Example Corp".into(),
        }
        .into(),
        OperatorTokenIssued {
            token_id: "tok-01".into(),
            permissions: vec!["system.kubernetes_provision".into()],
            fingerprint: FP.into(),
            expires_at: Some("2027-01-01T00:00:00Z".into()),
        }
        .into(),
        OperatorTokenRevoked {
            token_id: "tok-01".into(),
        }
        .into(),
        TemplateCreated {
            template_id: "tmpl-k3s-server".into(),
            name: "k3s-server".into(),
        }
        .into(),
        NodeCreated {
            node_id: "node-01".into(),
            hostname: "k3s-prod-server-1".into(),
            template_id: "tmpl-k3s-server".into(),
            memory_mb: 8192,
        }
        .into(),
        InstanceProvisioned {
            instance_id: INSTANCE.into(),
            node_id: "node-01".into(),
            template_id: "tmpl-k3s-server".into(),
            cni_plugin: Some(CniPlugin::Flannel),
            enrollment_fingerprint: FP.into(),
        }
        .into(),
        AgentEnrolled {
            instance_id: INSTANCE.into(),
            public_key: "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a".into(),
        }
        .into(),
        InstanceDrained {
            instance_id: INSTANCE.into(),
        }
        .into(),
        InstanceTerminated {
            instance_id: INSTANCE.into(),
        }
        .into(),
        AgentSubmissionRejected {
            instance_id: INSTANCE.into(),
            kind: Some("system.k3s.handshake.join_request".into()),
            event_id: Some("0190d5a0-7b1c-7d2e-8f3a-4b5c6d7e8f90".into()),
            reason:
                "bad_signature: the signature does not verify with the key the instance enrolled"
                    .into(),
        }
        .into(),
        NetworkCreated {
            network_id: "net-prod".into(),
            name: "k3s-prod-net".into(),
            handle: "prod".into(),
            overlay_prefix: "fd00:abcd:1::/64".parse().expect("literal prefix"),
            vip_range: "fd00:abcd:1::100/120".parse().expect("literal prefix"),
            pod_subnet_prefix: Some(prefix),
            routing_mode: RoutingMode::Ibgp,
        }
        .into(),
        PodSubnetPrefixSet {
            network_id: "net-prod".into(),
            pod_subnet_prefix: prefix,
        }
        .into(),
        PeerAttached {
            network_id: "net-prod".into(),
            peer_id: "peer-01".into(),
            instance_id: INSTANCE.into(),
            overlay_ip: "fd00:abcd:1::5".parse().expect("literal address"),
            lan_subnets: vec!["192.168.55.0/24".parse().expect("literal prefix")],
        }
        .into(),
        VirtualIpAllocated {
            virtual_ip_id: VIP.into(),
            network_id: "net-prod".into(),
            vip: "fd00:abcd:1::100".parse().expect("literal address"),
            purpose: VipPurpose::K3sApiEndpoint,
            cluster_id: CLUSTER.into(),
            primary_holder_peer_id: "peer-01".into(),
        }
        .into(),
        VirtualIpAllocationFailed {
            cluster_id: CLUSTER.into(),
            reason: "network net-prod has no free address in its VIP range".into(),
            fallback_api_endpoint: "https://[fd00:abcd:1::5]:6443".into(),
        }
        .into(),
        VirtualIpCandidateAdded {
            virtual_ip_id: VIP.into(),
            peer_id: "peer-02".into(),
        }
        .into(),
        VirtualIpPromoted {
            virtual_ip_id: VIP.into(),
            from_peer_id: Some("peer-01".into()),
            to_peer_id: "peer-02".into(),
            generation: 2,
            reason: "approved_failover".into(),
            to_instance_id: Some("inst-02".into()),
            approval_id: Some("appr-01".into()),
        }
        .into(),
        VirtualIpReleased {
            virtual_ip_id: VIP.into(),
            reason: "cluster decommissioned".into(),
        }
        .into(),
        VipHolderSilent {
            virtual_ip_id: VIP.into(),
            holder_peer_id: "peer-01".into(),
            last_seen_at: "2026-11-21T11:59:56Z".into(),
            threshold_ms: 3000,
            observer: "sensor-1".into(),
            reason: SilenceReason::Heartbeat,
        }
        .into(),
        VipHolderRecovered {
            virtual_ip_id: VIP.into(),
            holder_peer_id: "peer-01".into(),
            silent_for_ms: 4200,
        }
        .into(),
        FailoverProposed {
            virtual_ip_id: VIP.into(),
            current_holder_peer_id: "peer-01".into(),
            candidate_peer_id: "peer-02".into(),
            score: 0.92,
            approval_id: "appr-01".into(),
            generation: 1,
            candidates: vec![FailoverCandidate {
                peer_id: "peer-02".into(),
                instance_id: "inst-02".into(),
                score: 0.92,
                reasons: vec!["ready".into(), "heartbeat 0.4 s ago".into()],
            }],
        }
        .into(),
        ModuleAssigned {
            assignment_id: "asg-01".into(),
            template_id: "tmpl-k3s-worker".into(),
            module_name: K3sModule::K3sAgent,
            config: ModuleConfig {
                target_cluster_id: Some(CLUSTER.into()),
                extra: BTreeMap::new(),
            },
            module_version_id: Some("v-k3s-agent-1.30.5".into()),
            instance_id: None,
        }
        .into(),
        RuntimeInstalling {
            instance_id: INSTANCE.into(),
            module_name: K3sModule::K3sServer,
            version: "v1.30.5+k3s1".into(),
        }
        .into(),
        HandshakeBootstrap {
            instance_id: INSTANCE.into(),
            k3s_version: "v1.30.5+k3s1".into(),
            node_token_fingerprint: FP.into(),
            kubeconfig_fingerprint: FP.into(),
        }
        .into(),
        HandshakeJoinRequest {
            instance_id: INSTANCE.into(),
            module_name: K3sModule::K3sAgent,
            target_cluster_id: Some(CLUSTER.into()),
        }
        .into(),
        JoinTokenIssued {
            instance_id: INSTANCE.into(),
            cluster_id: CLUSTER.into(),
            api_endpoint: "https://[fd00:abcd:1::100]:6443".into(),
            token_fingerprint: FP.into(),
        }
        .into(),
        JoinRejected {
            instance_id: INSTANCE.into(),
            target_cluster_id: Some("cluster-unknown".into()),
            reason: "cluster_not_found".into(),
        }
        .into(),
        HandshakeReady {
            instance_id: INSTANCE.into(),
            cluster_id: CLUSTER.into(),
            node_name: "k3s-prod-server-1".into(),
            k3s_version: "v1.30.5+k3s1".into(),
            token_fingerprint: None,
        }
        .into(),
        BootstrapRejected {
            instance_id: INSTANCE.into(),
            reason: "not_a_bootstrap_server: template tmpl-worker assigns k3s-agent".into(),
        }
        .into(),
        JoinTokenRotated {
            cluster_id: CLUSTER.into(),
            token_fingerprint:
                "sha256:5b1d2f0c4e9a8b7d6c5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c".into(),
        }
        .into(),
        ClusterBootstrapped {
            cluster_id: CLUSTER.into(),
            name: "k3s-prod-server-1".into(),
            bootstrap_instance_id: INSTANCE.into(),
            api_endpoint: "https://[fd00:abcd:1::100]:6443".into(),
            network_id: Some("net-prod".into()),
            cni_plugin: CniPlugin::Flannel,
            pod_cidr: Some(prefix),
            server_flags: vec![
                "--flannel-iface=wg-sdwan-prod".into(),
                "--flannel-backend=host-gw".into(),
                "--cluster-cidr=10.42.0.0/16".into(),
            ],
            join_token_fingerprint:
                "sha256:9f2c4e6a8b0d1f3e5a7c9b1d3f5e7a9c0b2d4f6e8a0c2e4b6d8f0a1c3e5b7d9f".into(),
        }
        .into(),
        ClusterActivated {
            cluster_id: CLUSTER.into(),
        }
        .into(),
        NodeRegistered {
            cluster_id: CLUSTER.into(),
            instance_id: INSTANCE.into(),
            role: NodeRole::ControlPlane,
        }
        .into(),
        ClusterDecommissioned {
            cluster_id: CLUSTER.into(),
            released_virtual_ip_id: Some(VIP.into()),
        }
        .into(),
        PodSubnetPrefixIgnored {
            cluster_id: CLUSTER.into(),
            network_id: "net-prod".into(),
            pod_subnet_prefix: prefix,
            cni_plugin: CniPlugin::OvnKubernetes,
        }
        .into(),
        KubeconfigRetrieved {
            cluster_id: CLUSTER.into(),
            fingerprint: FP.into(),
        }
        .into(),
        ModuleVersionCreated {
            module_version_id: "v-k3s-1.31.0".into(),
            module_id: "mod-k3s-server".into(),
            module_name: K3sModule::K3sServer,
            version: "1.31.0".into(),
            k3s_version: "v1.31.0+k3s1".into(),
        }
        .into(),
        SkillExecutionStarted {
            execution_id: EXEC.into(),
            skill: SkillName::RollingModuleUpgrade,
            inputs: Box::new(SkillInputs {
                template_id: Some("tmpl-k3s-prod-server".into()),
                module_id: Some("mod-k3s-server".into()),
                target_version_id: Some("v-k3s-1.31.0".into()),
                batch_pct: Some(50),
                max_consecutive_failures: Some(1),
                ..SkillInputs::default()
            }),
            scope: "template/tmpl-k3s-prod-server".into(),
            steps: vec![PlanStep {
                step: 0,
                batch: 0,
                action: StepAction::Upgrade,
                instance_id: INSTANCE.into(),
                node_name: "k3s-prod-1".into(),
                role: K3sModule::K3sServer,
                cluster_id: Some(CLUSTER.into()),
                from_version_id: Some("v-k3s-1.30.5".into()),
                to_version_id: Some("v-k3s-1.31.0".into()),
                extra_flags: vec![],
                vip_moves: vec![PlannedVipMove {
                    virtual_ip_id: VIP.into(),
                    vip: "fd00:abcd:1::100".into(),
                }],
            }],
            max_consecutive_failures: 1,
        }
        .into(),
        SkillStepStarted {
            execution_id: EXEC.into(),
            step: 0,
            instance_id: INSTANCE.into(),
        }
        .into(),
        SkillStepSucceeded {
            execution_id: EXEC.into(),
            step: 0,
            instance_id: INSTANCE.into(),
            running_version_id: Some("v-k3s-1.31.0".into()),
        }
        .into(),
        SkillStepFailed {
            execution_id: EXEC.into(),
            step: 0,
            instance_id: INSTANCE.into(),
            reason: "node did not become ready within 300 s".into(),
            rolled_back: true,
            running_version_id: Some("v-k3s-1.30.5".into()),
            consecutive_failures: 1,
        }
        .into(),
        SkillExecutionPaused {
            execution_id: EXEC.into(),
            reason: "paused by operator".into(),
        }
        .into(),
        SkillExecutionResumed {
            execution_id: EXEC.into(),
        }
        .into(),
        SkillExecutionCompleted {
            execution_id: EXEC.into(),
            succeeded: 3,
            failed: 0,
            cluster_id: None,
        }
        .into(),
        SkillExecutionAborted {
            execution_id: EXEC.into(),
            reason: "max_consecutive_failures".into(),
            detail: "1 failure in a row (k3s-prod-2: node did not become ready); no further node touched".into(),
        }
        .into(),
        ModuleUpgraded {
            execution_id: EXEC.into(),
            step: 0,
            instance_id: INSTANCE.into(),
            module_name: K3sModule::K3sServer,
            from_version_id: Some("v-k3s-1.30.5".into()),
            to_version_id: Some("v-k3s-1.31.0".into()),
            k3s_version: "v1.31.0+k3s1".into(),
            phases: vec![PhaseReport {
                phase: UpgradePhase::Upgrade,
                ok: true,
                at_ms: 1_795_348_800_000,
                detail: None,
            }],
        }
        .into(),
        ModuleUpgradeFailed {
            execution_id: EXEC.into(),
            step: 0,
            instance_id: INSTANCE.into(),
            module_name: K3sModule::K3sServer,
            to_version_id: Some("v-k3s-1.31.0".into()),
            failed_phase: UpgradePhase::WaitReady,
            reason: "node did not become ready within 300 s".into(),
            rolled_back: true,
            running_version_id: Some("v-k3s-1.30.5".into()),
            k3s_version: "v1.30.5+k3s1".into(),
            phases: vec![PhaseReport {
                phase: UpgradePhase::Rollback,
                ok: true,
                at_ms: 1_795_348_800_000,
                detail: Some("reinstalled v1.30.5+k3s1".into()),
            }],
        }
        .into(),
        AgentOutdated {
            instance_id: INSTANCE.into(),
            agent_version: "0.0.9".into(),
            missing_capabilities: vec!["module_versions".into()],
        }
        .into(),
        ApprovalRequested {
            approval_id: "appr-01".into(),
            action: "vip_promotion".into(),
            subject: format!("virtual_ip/{VIP}"),
            summary: "promote peer-02 to hold the k3s API VIP of cluster prod".into(),
            expires_at: "2026-11-21T12:15:00Z".into(),
        }
        .into(),
        ApprovalGranted {
            approval_id: "appr-01".into(),
        }
        .into(),
        ApprovalRejected {
            approval_id: "appr-01".into(),
            reason: "maintenance window".into(),
        }
        .into(),
        ApprovalExpired {
            approval_id: "appr-01".into(),
        }
        .into(),
        RecordRejected {
            rejected_seq: 42,
            rejected_kind: Some("system.k3s.handshake.ready".into()),
            rejected_event_id: None,
            reason: "signature does not verify against the enrolled key".into(),
            observed_by: "provisioner".into(),
        }
        .into(),
        LogSealed {
            chain: "log".into(),
            from_seq: 1,
            through_seq: 2,
            digest: "9f".repeat(32),
            fingerprints: "0a1b2c3d4e5f6a7b".into(),
            key: "3d".repeat(32),
            signature: "5e".repeat(64),
        }
        .into(),
        AgentSubmissionsRejectedSummary {
            observed_by: "intake".into(),
            window_start: Utc
                .with_ymd_and_hms(2026, 11, 21, 12, 0, 0)
                .single()
                .expect("fixed timestamp is valid"),
            window_end: Utc
                .with_ymd_and_hms(2026, 11, 21, 12, 1, 0)
                .single()
                .expect("fixed timestamp is valid"),
            count: 2000,
            by_reason: BTreeMap::from([
                ("bad_signature".to_string(), 1200),
                ("unknown_instance".to_string(), 800),
            ]),
        }
        .into(),
        McpToolCalled {
            tool: "kubernetes_decommission_cluster".into(),
            token_id: "tok-ops".into(),
            transport: McpTransport::Stdio,
            outcome: "confirmation_requested".into(),
            confirmation_id: Some("cf-0190f3a2b4c5".into()),
            object_id: Some(CLUSTER.into()),
        }
        .into(),
        VirtualIpApplied {
            virtual_ip_id: VIP.into(),
            instance_id: "inst-02".into(),
            peer_id: "peer-02".into(),
            generation: 2,
            held: true,
        }
        .into(),
        VirtualIpReachable {
            virtual_ip_id: VIP.into(),
            generation: 2,
            holder_peer_id: "peer-02".into(),
            probed_by_peer_id: "peer-03".into(),
            probed_at: "2026-11-21T12:00:01Z".into(),
        }
        .into(),
        WireguardKeyRegistered {
            instance_id: "inst-02".into(),
            public_key: "hW5iIqAMuVNpD1JjhH3AjLWGv4rxbwTqwQJ2ZqXcyFE=".into(),
            endpoint: "10.99.0.2:51820".into(),
        }
        .into(),
        AccessGrantCreated {
            grant_id: "grant-01".into(),
            network_id: "net-prod".into(),
            name: "laptop".into(),
            public_key: "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=".into(),
            address: "fd00:abcd:1::ff01".parse().expect("literal address"),
            gateway_peer_id: "peer-03".into(),
            expires_at: Some("2026-11-22T12:00:00Z".into()),
        }
        .into(),
        AccessGrantRevoked {
            grant_id: "grant-01".into(),
            network_id: "net-prod".into(),
            reason: AccessGrantEnd::Revoked,
        }
        .into(),
        FailoverNoCandidate {
            virtual_ip_id: VIP.into(),
            holder_peer_id: "peer-01".into(),
            reason: "single-server cluster: no other ready k3s-server".into(),
        }
        .into(),
        FailoverSuppressed {
            virtual_ip_id: VIP.into(),
            holder_peer_id: "peer-02".into(),
            candidate_peer_id: Some("peer-01".into()),
            reason: "cooldown: last promotion 12 s ago (min 30 s)".into(),
        }
        .into(),
        ApprovalSuperseded {
            approval_id: "appr-01".into(),
            reason: "the holder was heard again".into(),
        }
        .into(),
    ]
}
