//! provision_cluster: the bootstrap server first, then the joiners, each
//! assigned the new cluster as its step starts; the cluster in the end.

use super::world::*;
use crate::services::given::*;
use powernode_events::payloads::fleet::CniPlugin;
use powernode_events::payloads::k3s::{
    ClusterBootstrapped, HandshakeReady, JoinRejected, K3sModule,
};
use powernode_events::payloads::skills::*;
use powernode_events::EventPayload;

fn provision_step(n: u32, batch: u32, instance: &str, role: K3sModule) -> PlanStep {
    PlanStep {
        action: StepAction::Provision,
        cluster_id: None,
        from_version_id: None,
        ..step(n, batch, instance, &format!("node-{n}"), role)
    }
}

fn plan() -> Vec<PlanStep> {
    let ids = Ids::new(ACCOUNT);
    vec![
        provision_step(0, 0, &ids.server, K3sModule::K3sServer),
        provision_step(1, 2, &ids.worker, K3sModule::K3sAgent),
    ]
}

fn bootstrapped(g: &mut Given) -> Vec<EventPayload> {
    let ids = Ids::new(ACCOUNT);
    g.and(ClusterBootstrapped {
        cluster_id: ids.cluster.clone(),
        name: "c".into(),
        bootstrap_instance_id: ids.server.clone(),
        api_endpoint: "https://[fd00:abcd:1::100]:6443".into(),
        network_id: Some(ids.network.clone()),
        cni_plugin: CniPlugin::Flannel,
        pod_cidr: None,
        server_flags: vec![],
        join_token_fingerprint: String::new(),
    });
    when_agent(
        g,
        &ids.server,
        HandshakeReady {
            instance_id: ids.server.clone(),
            cluster_id: ids.cluster.clone(),
            node_name: "acme-server-1".into(),
            k3s_version: VERSION.into(),
            token_fingerprint: None,
        },
    )
}

#[test]
fn provisioning_starts_the_bootstrap_server_then_assigns_and_starts_the_joiners() {
    let mut g = Given::fleet();
    catalog(&mut g);
    let ids = Ids::new(ACCOUNT);
    let first = when(&mut g, started(SkillName::ProvisionCluster, plan(), 1));
    assert_eq!(starts(&first), vec![0]);
    // The bootstrap server ready in its cluster: its step succeeds, and the
    // worker is assigned the cluster (pinned to the newest version) and started.
    let next = bootstrapped(&mut g);
    assert!(
        matches!(&next[0], EventPayload::SkillStepSucceeded(p) if p.step == 0),
        "{next:?}"
    );
    assert_eq!(starts(&next), vec![1]);
    let assigned = next
        .iter()
        .find_map(|e| match e {
            EventPayload::ModuleAssigned(a) => Some(a.clone()),
            _ => None,
        })
        .expect("the worker is assigned the cluster");
    assert_eq!(assigned.instance_id.as_deref(), Some(ids.worker.as_str()));
    assert_eq!(
        assigned.config.target_cluster_id.as_deref(),
        Some(ids.cluster.as_str())
    );
    assert_eq!(assigned.module_name, K3sModule::K3sAgent);
    assert_eq!(assigned.template_id, ids.worker_tmpl);
    // The worker ready in the cluster: completed, with the cluster.
    let done = when_agent(
        &mut g,
        &ids.worker,
        HandshakeReady {
            instance_id: ids.worker.clone(),
            cluster_id: ids.cluster.clone(),
            node_name: "acme-worker-1".into(),
            k3s_version: VERSION.into(),
            token_fingerprint: None,
        },
    );
    match &done[..] {
        [EventPayload::SkillStepSucceeded(s), EventPayload::SkillExecutionCompleted(c)] => {
            assert_eq!(s.step, 1);
            assert_eq!((c.succeeded, c.failed), (2, 0));
            assert_eq!(c.cluster_id.as_deref(), Some(ids.cluster.as_str()));
        }
        other => panic!("completed: {other:?}"),
    }
}

#[test]
fn a_join_rejection_fails_the_joiners_step() {
    let mut g = Given::fleet();
    catalog(&mut g);
    let ids = Ids::new(ACCOUNT);
    when(&mut g, started(SkillName::ProvisionCluster, plan(), 1));
    bootstrapped(&mut g);
    let next = when(
        &mut g,
        JoinRejected {
            instance_id: ids.worker.clone(),
            target_cluster_id: Some(ids.cluster.clone()),
            reason: "bad_token: rotated".into(),
        },
    );
    match &next[..] {
        [EventPayload::SkillStepFailed(f), EventPayload::SkillExecutionAborted(_)] => {
            assert_eq!(f.reason, "join rejected: bad_token: rotated");
        }
        other => panic!("the step fails: {other:?}"),
    }
}
