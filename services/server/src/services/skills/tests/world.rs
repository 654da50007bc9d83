//! A cluster of two servers (the first holds the VIP) and a worker, a
//! module catalog, and helpers to start executions and fold decisions.

use super::super::{decide, Effect, SkillsConfig};
use crate::services::given::*;
use chrono::{DateTime, Utc};
use powernode_events::payloads::fleet::{AgentEnrolled, InstanceProvisioned, NodeCreated};
use powernode_events::payloads::k3s::{
    HandshakeReady, JoinTokenIssued, K3sModule, NodeRegistered, NodeRole,
};
use powernode_events::payloads::sdwan::{PeerAttached, VirtualIpCandidateAdded};
use powernode_events::payloads::skills::*;
use powernode_events::{Actor, Envelope, EventPayload};
use powernode_projections::fleet::Execution;
use powernode_projections::FleetState;
use powernode_runtime::{Decisions, Reactor};

/// The execution of the tests.
pub const EXEC: &str = "exec-1";
/// The second server.
pub const SERVER2: &str = "acme-inst-server-2";
/// Its peer.
pub const SERVER2_PEER: &str = "acme-peer-server-2";
/// The versions.
pub const FROM: &str = "v-k3s-1.30.5";
/// The target.
pub const TO: &str = "v-k3s-1.31.0";

/// The rules as a reactor (no log: effects are looked at, not performed).
pub struct Rules(pub SkillsConfig);

impl Reactor<FleetState> for Rules {
    type Effect = Effect;

    fn decide(
        &mut self,
        state: &FleetState,
        seq: u64,
        event: &Envelope,
        now: DateTime<Utc>,
        out: &mut Decisions<Effect>,
    ) {
        decide(state, seq, event, now, &self.0, out);
    }
}

/// The rules with the default timeouts.
pub fn rules() -> Rules {
    Rules(SkillsConfig::default())
}

/// An agent-authored event of `instance`.
pub fn by_agent(g: &mut Given, instance: &str, payload: impl Into<EventPayload>) {
    g.stream.push_as(
        ACCOUNT,
        Actor::Agent {
            instance_id: instance.into(),
        },
        payload,
    );
}

/// The module catalog: two server versions.
pub fn catalog(g: &mut Given) {
    for (version, k3s) in [("1.30.5", "v1.30.5+k3s1"), ("1.31.0", "v1.31.0+k3s1")] {
        g.and(ModuleVersionCreated {
            module_version_id: K3sModule::K3sServer.version_id(version),
            module_id: K3sModule::K3sServer.module_id().into(),
            module_name: K3sModule::K3sServer,
            version: version.into(),
            k3s_version: k3s.into(),
        });
    }
}

/// [`Given::joined_worker`] with a second server (a VIP candidate) ready
/// in the cluster, and the catalog.
pub fn cluster() -> Given {
    let mut g = Given::joined_worker();
    let ids = Ids::new(ACCOUNT);
    g.and(NodeCreated {
        node_id: "acme-node-server-2".into(),
        hostname: "acme-server-2".into(),
        template_id: ids.server_tmpl.clone(),
        memory_mb: 8192,
    })
    .and(InstanceProvisioned {
        instance_id: SERVER2.into(),
        node_id: "acme-node-server-2".into(),
        template_id: ids.server_tmpl.clone(),
        cni_plugin: None,
        enrollment_fingerprint: FP.into(),
    });
    by_agent(
        &mut g,
        SERVER2,
        AgentEnrolled {
            instance_id: SERVER2.into(),
            public_key: AGENT_KEY.into(),
        },
    );
    g.and(PeerAttached {
        network_id: ids.network.clone(),
        peer_id: SERVER2_PEER.into(),
        instance_id: SERVER2.into(),
        overlay_ip: "fd00:abcd:1::7".parse().expect("an address"),
        lan_subnets: vec![],
    })
    .and(JoinTokenIssued {
        instance_id: SERVER2.into(),
        cluster_id: ids.cluster.clone(),
        api_endpoint: "https://[fd00:abcd:1::100]:6443".into(),
        token_fingerprint: FP.into(),
    })
    .and(NodeRegistered {
        cluster_id: ids.cluster.clone(),
        instance_id: SERVER2.into(),
        role: NodeRole::ControlPlane,
    })
    .and(VirtualIpCandidateAdded {
        virtual_ip_id: ids.vip.clone(),
        peer_id: SERVER2_PEER.into(),
    });
    by_agent(
        &mut g,
        SERVER2,
        HandshakeReady {
            instance_id: SERVER2.into(),
            cluster_id: ids.cluster.clone(),
            node_name: "acme-server-2".into(),
            k3s_version: VERSION.into(),
            token_fingerprint: None,
        },
    );
    catalog(&mut g);
    g
}

/// An upgrade step of `instance` (node `node`, module `role`).
pub fn step(n: u32, batch: u32, instance: &str, node: &str, role: K3sModule) -> PlanStep {
    PlanStep {
        step: n,
        batch,
        action: StepAction::Upgrade,
        instance_id: instance.into(),
        node_name: node.into(),
        role,
        cluster_id: Some(Ids::new(ACCOUNT).cluster),
        from_version_id: Some(FROM.into()),
        to_version_id: Some(TO.into()),
        extra_flags: vec![],
        vip_moves: vec![],
    }
}

/// The rolling upgrade of the tests: the worker (batch 0), the second
/// server (batch 1), the VIP holder last (batch 2, its VIP moved first).
pub fn rolling_plan() -> Vec<PlanStep> {
    let ids = Ids::new(ACCOUNT);
    let mut holder = step(2, 2, &ids.server, "acme-server-1", K3sModule::K3sServer);
    holder.vip_moves = vec![PlannedVipMove {
        virtual_ip_id: ids.vip.clone(),
        vip: "fd00:abcd:1::100".into(),
    }];
    vec![
        step(0, 0, &ids.worker, "acme-worker-1", K3sModule::K3sAgent),
        step(1, 1, SERVER2, "acme-server-2", K3sModule::K3sServer),
        holder,
    ]
}

/// The start of execution [`EXEC`] with `steps`.
pub fn started(skill: SkillName, steps: Vec<PlanStep>, max: u32) -> SkillExecutionStarted {
    SkillExecutionStarted {
        execution_id: EXEC.into(),
        skill,
        inputs: Box::default(),
        scope: "template/t".into(),
        steps,
        max_consecutive_failures: max,
    }
}

/// Folds the events decided (as if appended) and answers them.
pub fn fold_decided(g: &mut Given, out: &Decisions<Effect>) -> Vec<EventPayload> {
    let mut folded = Vec::new();
    for effect in out.effects() {
        if let Effect::Execution(d) = effect {
            for e in &d.events {
                let seq = g.stream.events.len() as u64 + 1;
                g.stream.events.push((seq, e.clone()));
                folded.push(e.payload.clone());
            }
        }
    }
    folded
}

/// When `payload` happens: the events decided, folded.
pub fn when(g: &mut Given, payload: impl Into<EventPayload>) -> Vec<EventPayload> {
    let out = g.when(&mut rules(), payload);
    fold_decided(g, &out)
}

/// When the agent of `instance` reports `payload`: the events decided, folded.
pub fn when_agent(
    g: &mut Given,
    instance: &str,
    payload: impl Into<EventPayload>,
) -> Vec<EventPayload> {
    by_agent(g, instance, payload);
    let now = g.now_plus(chrono::Duration::seconds(1));
    let out = g.decide(&mut rules(), now);
    fold_decided(g, &out)
}

/// The agent's report that step `n` of [`EXEC`] worked.
pub fn upgraded(n: u32, instance: &str, module: K3sModule) -> ModuleUpgraded {
    ModuleUpgraded {
        execution_id: EXEC.into(),
        step: n,
        instance_id: instance.into(),
        module_name: module,
        from_version_id: Some(FROM.into()),
        to_version_id: Some(TO.into()),
        k3s_version: "v1.31.0+k3s1".into(),
        phases: vec![],
    }
}

/// The agent's report that step `n` of [`EXEC`] failed and was rolled back.
pub fn upgrade_failed(n: u32, instance: &str, module: K3sModule) -> ModuleUpgradeFailed {
    ModuleUpgradeFailed {
        execution_id: EXEC.into(),
        step: n,
        instance_id: instance.into(),
        module_name: module,
        to_version_id: Some(TO.into()),
        failed_phase: UpgradePhase::WaitReady,
        reason: "node not ready after 60 s".into(),
        rolled_back: true,
        running_version_id: Some(FROM.into()),
        k3s_version: "v1.30.5+k3s1".into(),
        phases: vec![],
    }
}

/// Steps started among `events`.
pub fn starts(events: &[EventPayload]) -> Vec<u32> {
    events
        .iter()
        .filter_map(|e| match e {
            EventPayload::SkillStepStarted(p) => Some(p.step),
            _ => None,
        })
        .collect()
}

/// The execution as the stream folds it.
pub fn execution(g: &Given) -> Execution {
    g.state()
        .account(&powernode_events::AccountId::new(ACCOUNT).expect("a valid id"))
        .and_then(|a| a.executions.get(EXEC).cloned())
        .expect("the execution is known")
}
