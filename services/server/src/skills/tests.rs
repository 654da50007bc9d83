//! Given a fleet (folded from events), when a skill is planned, then the
//! plan is what the rules say.

use super::*;
use powernode_events::payloads::fleet::{
    AccountCreated, AgentEnrolled, CniPlugin, InstanceProvisioned, InstanceTerminated, NodeCreated,
    TemplateCreated,
};
use powernode_events::payloads::k3s::{
    ClusterBootstrapped, HandshakeReady, K3sModule, ModuleAssigned, ModuleConfig, NodeRegistered,
    NodeRole,
};
use powernode_events::payloads::sdwan::{
    NetworkCreated, PeerAttached, RoutingMode, VipPurpose, VirtualIpAllocated,
};
use powernode_events::payloads::skills::{ModuleVersionCreated, StepAction};
use powernode_events::{AccountId, Actor, Envelope, EventPayload};
use powernode_projections::{FleetState, Projection};

const ACCOUNT: &str = "acct-1";

/// A fleet built event by event.
struct Given {
    state: FleetState,
    seq: u64,
}

impl Given {
    fn new() -> Self {
        let mut g = Self {
            state: FleetState::default(),
            seq: 0,
        };
        g.event(AccountCreated {
            account_id: ACCOUNT.into(),
            name: "ops".into(),
        });
        g.event(NetworkCreated {
            network_id: "net-1".into(),
            name: "prod".into(),
            handle: "abcd".into(),
            overlay_prefix: "fd00:1::/64".parse().expect("prefix"),
            vip_range: "fd00:1::100/120".parse().expect("prefix"),
            pod_subnet_prefix: None,
            routing_mode: RoutingMode::Ibgp,
        });
        for (template, module) in [
            ("tmpl-s", K3sModule::K3sServer),
            ("tmpl-w", K3sModule::K3sAgent),
        ] {
            g.event(TemplateCreated {
                template_id: template.into(),
                name: template.into(),
            });
            g.assign(template, module, None);
        }
        for v in ["1.30.0", "1.31.0"] {
            for m in K3sModule::ALL {
                g.event(ModuleVersionCreated {
                    module_version_id: m.version_id(v),
                    module_id: m.module_id().into(),
                    module_name: m,
                    version: v.into(),
                    k3s_version: format!("v{v}+k3s1"),
                });
            }
        }
        g
    }

    fn account() -> AccountId {
        AccountId::new(ACCOUNT).expect("a valid id")
    }

    fn event(&mut self, payload: impl Into<EventPayload>) {
        self.seq += 1;
        let e = Envelope::new(Self::account(), Actor::service("test"), payload);
        self.state.apply(self.seq, &e);
    }

    fn assign(&mut self, template: &str, module: K3sModule, version: Option<&str>) {
        self.event(ModuleAssigned {
            assignment_id: format!("asg-{}", self.seq),
            template_id: template.into(),
            module_name: module,
            config: ModuleConfig {
                target_cluster_id: None,
                extra: Default::default(),
            },
            module_version_id: version.map(str::to_string),
            instance_id: None,
        });
    }

    /// An enrolled instance `host` of `template`.
    fn instance(&mut self, host: &str, template: &str) -> String {
        let id = format!("inst-{host}");
        self.event(NodeCreated {
            node_id: format!("node-{host}"),
            hostname: host.into(),
            template_id: template.into(),
            memory_mb: 2048,
        });
        self.event(InstanceProvisioned {
            instance_id: id.clone(),
            node_id: format!("node-{host}"),
            template_id: template.into(),
            cni_plugin: None,
            enrollment_fingerprint: format!("sha256:{host}"),
        });
        self.event(AgentEnrolled {
            instance_id: id.clone(),
            public_key: "00".repeat(32),
        });
        id
    }

    /// A cluster `name` of `servers` servers (of `tmpl-s`, the first
    /// bootstraps and holds the VIP) and `workers` workers (of `tmpl-w`),
    /// every node ready on `version`.
    fn cluster(&mut self, name: &str, servers: usize, workers: usize, version: &str) {
        let cluster = format!("cluster-{name}");
        let mut members = Vec::new();
        for i in 1..=servers {
            let id = self.instance(&format!("{name}-s{i}"), "tmpl-s");
            members.push((id, NodeRole::ControlPlane));
        }
        for i in 1..=workers {
            let id = self.instance(&format!("{name}-w{i}"), "tmpl-w");
            members.push((id, NodeRole::Worker));
        }
        for (n, (id, _)) in members.iter().enumerate() {
            self.event(PeerAttached {
                network_id: "net-1".into(),
                peer_id: format!("peer-{id}"),
                instance_id: id.clone(),
                overlay_ip: format!("fd00:1::{:x}", 0x10 + n + self.seq as usize)
                    .parse()
                    .expect("address"),
                lan_subnets: Vec::new(),
            });
        }
        let bootstrap = members[0].0.clone();
        self.event(ClusterBootstrapped {
            cluster_id: cluster.clone(),
            name: name.into(),
            bootstrap_instance_id: bootstrap.clone(),
            api_endpoint: "https://[fd00:1::100]:6443".into(),
            network_id: Some("net-1".into()),
            cni_plugin: CniPlugin::Flannel,
            pod_cidr: None,
            server_flags: Vec::new(),
            join_token_fingerprint: "sha256:t".into(),
        });
        for (id, role) in &members {
            self.event(NodeRegistered {
                cluster_id: cluster.clone(),
                instance_id: id.clone(),
                role: *role,
            });
            self.event(HandshakeReady {
                instance_id: id.clone(),
                cluster_id: cluster.clone(),
                node_name: id.trim_start_matches("inst-").into(),
                k3s_version: format!("v{version}+k3s1"),
                token_fingerprint: None,
            });
        }
        self.event(VirtualIpAllocated {
            virtual_ip_id: format!("vip-{name}"),
            network_id: "net-1".into(),
            vip: format!("fd00:1::1{:02x}", self.seq % 200)
                .parse()
                .expect("vip"),
            purpose: VipPurpose::K3sApiEndpoint,
            cluster_id: cluster,
            primary_holder_peer_id: format!("peer-{bootstrap}"),
        });
    }
}

fn upgrade(template: &str, module: K3sModule, to: &str, pct: u32) -> UpgradeInputs {
    UpgradeInputs {
        template_id: template.into(),
        module_id: module.module_id().into(),
        target_version_id: to.into(),
        batch_pct: pct,
        max_consecutive_failures: 1,
    }
}

/// Node names per batch.
fn batches(plan: &Plan) -> Vec<Vec<&str>> {
    let mut out: Vec<Vec<&str>> = Vec::new();
    for s in &plan.steps {
        if out.len() <= s.batch as usize {
            out.push(Vec::new());
        }
        out[s.batch as usize].push(&s.node_name);
    }
    out
}

#[test]
fn the_runbook_upgrade_takes_one_server_at_a_time_and_the_holder_last() {
    let mut g = Given::new();
    g.assign("tmpl-s", K3sModule::K3sServer, Some("v-k3s-1.30.0"));
    g.cluster("prod", 3, 3, "1.30.0");
    let plan = rolling_upgrade(
        &g.state,
        &Given::account(),
        &upgrade("tmpl-s", K3sModule::K3sServer, "v-k3s-1.31.0", 50),
    )
    .expect("a plan");
    assert_eq!(plan.scope, "template/tmpl-s");
    assert_eq!(
        batches(&plan),
        vec![vec!["prod-s2"], vec!["prod-s3"], vec!["prod-s1"]]
    );
    let last = plan.steps.last().expect("three steps");
    assert_eq!(last.vip_moves.len(), 1);
    assert_eq!(last.vip_moves[0].virtual_ip_id, "vip-prod");
    for s in &plan.steps {
        assert_eq!(s.action, StepAction::Upgrade);
        assert_eq!(s.role, K3sModule::K3sServer);
        assert_eq!(s.cluster_id.as_deref(), Some("cluster-prod"));
        assert_eq!(s.from_version_id.as_deref(), Some("v-k3s-1.30.0"));
        assert_eq!(s.to_version_id.as_deref(), Some("v-k3s-1.31.0"));
    }
    assert!(plan.steps[..2].iter().all(|s| s.vip_moves.is_empty()));
    let started = plan.started("exec-1");
    assert_eq!(started.steps, plan.steps);
    assert_eq!(started.inputs.batch_pct, Some(50));
}

#[test]
fn workers_go_in_batches_of_the_percentage() {
    let mut g = Given::new();
    g.cluster("prod", 1, 7, "1.30.0");
    let account = Given::account();
    for (pct, sizes) in [
        (1, vec![1; 7]),
        (34, vec![3, 3, 1]),
        (50, vec![4, 3]),
        (100, vec![7]),
    ] {
        let plan = rolling_upgrade(
            &g.state,
            &account,
            &upgrade("tmpl-w", K3sModule::K3sAgent, "v-k3s-agent-1.31.0", pct),
        )
        .expect("a plan");
        let got: Vec<usize> = batches(&plan).iter().map(Vec::len).collect();
        assert_eq!(got, sizes, "{pct}%");
        // Unpinned workers come from no version.
        assert!(plan.steps.iter().all(|s| s.from_version_id.is_none()));
    }
}

#[test]
fn five_servers_go_two_at_a_time() {
    let mut g = Given::new();
    g.cluster("big", 5, 0, "1.30.0");
    let plan = rolling_upgrade(
        &g.state,
        &Given::account(),
        &upgrade("tmpl-s", K3sModule::K3sServer, "v-k3s-1.31.0", 100),
    )
    .expect("a plan");
    assert_eq!(
        batches(&plan),
        vec![
            vec!["big-s2", "big-s3"],
            vec!["big-s4", "big-s5"],
            vec!["big-s1"]
        ]
    );
}

#[test]
fn instances_on_the_target_are_left_out_and_none_left_is_said() {
    let mut g = Given::new();
    g.assign("tmpl-s", K3sModule::K3sServer, Some("v-k3s-1.31.0"));
    g.cluster("prod", 3, 0, "1.31.0");
    let e = rolling_upgrade(
        &g.state,
        &Given::account(),
        &upgrade("tmpl-s", K3sModule::K3sServer, "v-k3s-1.31.0", 50),
    )
    .expect_err("nothing to do");
    assert_eq!(
        e,
        PlanError::NothingToDo(
            "every instance of template tmpl-s already runs v-k3s-1.31.0; nothing to upgrade"
                .into()
        )
    );
    // Unpinned workers that report the target's k3s release are on it too.
    let e = rolling_upgrade(
        &g.state,
        &Given::account(),
        &upgrade("tmpl-w", K3sModule::K3sAgent, "v-k3s-agent-1.31.0", 50),
    )
    .expect_err("no workers");
    assert!(matches!(e, PlanError::NothingToDo(_)), "{e}");
}

#[test]
fn terminated_and_unenrolled_instances_are_not_planned() {
    let mut g = Given::new();
    g.cluster("prod", 1, 3, "1.30.0");
    g.event(InstanceTerminated {
        instance_id: "inst-prod-w2".into(),
    });
    g.event(InstanceProvisioned {
        instance_id: "inst-late".into(),
        node_id: "node-prod-w1".into(),
        template_id: "tmpl-w".into(),
        cni_plugin: None,
        enrollment_fingerprint: "sha256:late".into(),
    });
    let plan = rolling_upgrade(
        &g.state,
        &Given::account(),
        &upgrade("tmpl-w", K3sModule::K3sAgent, "v-k3s-agent-1.31.0", 100),
    )
    .expect("a plan");
    assert_eq!(batches(&plan), vec![vec!["prod-w1", "prod-w3"]]);
}

#[test]
fn a_version_of_another_module_and_unknown_ids_are_refused() {
    let mut g = Given::new();
    g.cluster("prod", 3, 0, "1.30.0");
    let account = Given::account();
    let e = rolling_upgrade(
        &g.state,
        &account,
        &upgrade("tmpl-s", K3sModule::K3sServer, "v-k3s-agent-1.31.0", 50),
    )
    .expect_err("another module's version");
    assert_eq!(
        e.to_string(),
        "v-k3s-agent-1.31.0 is a version of mod-k3s-agent, not of mod-k3s-server"
    );
    let e = rolling_upgrade(
        &g.state,
        &account,
        &upgrade("tmpl-x", K3sModule::K3sServer, "v-k3s-1.31.0", 50),
    )
    .expect_err("no template");
    assert_eq!(e.to_string(), "no template \"tmpl-x\" in this account");
    let e = rolling_upgrade(
        &g.state,
        &account,
        &upgrade("tmpl-s", K3sModule::K3sServer, "v-k3s-9.9.9", 50),
    )
    .expect_err("no version");
    assert_eq!(
        e.to_string(),
        "no module version \"v-k3s-9.9.9\" in this account"
    );
    let other = AccountId::new("acct-2").expect("id");
    let e = rolling_upgrade(
        &g.state,
        &other,
        &upgrade("tmpl-s", K3sModule::K3sServer, "v-k3s-1.31.0", 50),
    )
    .expect_err("another account");
    assert!(matches!(e, PlanError::NotFound { .. }), "{e}");
}

#[test]
fn the_same_fleet_always_gives_the_same_plan() {
    let mut a = Given::new();
    a.cluster("one", 3, 0, "1.30.0");
    a.cluster("two", 3, 0, "1.30.0");
    let inputs = upgrade("tmpl-s", K3sModule::K3sServer, "v-k3s-1.31.0", 50);
    let first = rolling_upgrade(&a.state, &Given::account(), &inputs).expect("a plan");
    let again = rolling_upgrade(&a.state, &Given::account(), &inputs).expect("a plan");
    assert_eq!(first, again);
    // Two clusters share batches, one server of each at a time; holders last.
    assert_eq!(
        batches(&first),
        vec![
            vec!["one-s2", "two-s2"],
            vec!["one-s3", "two-s3"],
            vec!["one-s1"],
            vec!["two-s1"]
        ]
    );
}

#[test]
fn a_restamp_plans_every_ready_node_with_the_flags() {
    let mut g = Given::new();
    g.assign("tmpl-s", K3sModule::K3sServer, Some("v-k3s-1.30.0"));
    g.cluster("prod", 3, 2, "1.30.0");
    let flags = vec!["--flannel-iface=wg-sdwan-abcd".to_string()];
    let plan = restamp(
        &g.state,
        &Given::account(),
        "net-1",
        "cluster-prod",
        &flags,
        50,
    )
    .expect("a plan");
    assert_eq!(plan.scope, "cluster/cluster-prod");
    assert_eq!(
        batches(&plan),
        vec![
            vec!["prod-w1", "prod-w2", "prod-s2"],
            vec!["prod-s3"],
            vec!["prod-s1"]
        ]
    );
    for s in &plan.steps {
        assert_eq!(s.action, StepAction::Restamp);
        assert_eq!(s.extra_flags, flags);
        assert_eq!(s.from_version_id, s.to_version_id);
    }
    assert_eq!(
        plan.steps[2].from_version_id.as_deref(),
        Some("v-k3s-1.30.0")
    );
}

#[test]
fn provision_takes_idle_instances_and_says_how_many_there_are() {
    let mut g = Given::new();
    g.cluster("busy", 1, 0, "1.30.0");
    for h in ["idle-s1", "idle-s2", "idle-s3"] {
        g.instance(h, "tmpl-s");
    }
    g.instance("idle-w1", "tmpl-w");
    let account = Given::account();
    let mut inputs = ProvisionInputs {
        network_id: "net-1".into(),
        server_template_id: "tmpl-s".into(),
        worker_template_id: Some("tmpl-w".into()),
        servers: 3,
        workers: 1,
        timeout_secs: 600,
    };
    let plan = provision(&g.state, &account, &inputs).expect("a plan");
    assert_eq!(
        batches(&plan),
        vec![vec!["idle-s1"], vec!["idle-s2", "idle-s3"], vec!["idle-w1"]]
    );
    assert!(plan.steps.iter().all(|s| s.action == StepAction::Provision));
    assert_eq!(plan.steps[3].role, K3sModule::K3sAgent);
    assert_eq!(plan.steps[0].to_version_id.as_deref(), Some("v-k3s-1.31.0"));
    inputs.workers = 2;
    let e = provision(&g.state, &account, &inputs).expect_err("one idle worker");
    assert_eq!(
        e,
        PlanError::NotEnoughInstances(
            "template tmpl-w has 1 idle instance(s) (enrolled, not terminated, in no cluster); 2 worker(s) asked for".into()
        )
    );
}

#[test]
fn a_restamp_names_what_it_cannot_work_on() {
    let mut g = Given::new();
    g.cluster("prod", 1, 1, "1.30.0");
    let account = Given::account();
    let e = restamp(&g.state, &account, "net-1", "cluster-nope", &[], 50).expect_err("no cluster");
    assert_eq!(e.to_string(), "no cluster \"cluster-nope\" in this account");
    let e = restamp(&g.state, &account, "net-2", "cluster-prod", &[], 50).expect_err("no network");
    assert_eq!(e.to_string(), "no network \"net-2\" in this account");
    let plan = restamp(&g.state, &account, "net-1", "cluster-prod", &[], 100).expect("a plan");
    assert_eq!(plan.max_consecutive_failures, 1);
    assert_eq!(batches(&plan), vec![vec!["prod-w1"], vec!["prod-s1"]]);
}

#[test]
fn execution_ids_are_per_account_scope_and_count() {
    let a = AccountId::new("acct-a").expect("id");
    let b = AccountId::new("acct-b").expect("id");
    let id = execution_id(&a, "template/t", 0);
    assert!(id.starts_with("exec-") && id.len() == 37, "{id}");
    assert_eq!(id, execution_id(&a, "template/t", 0));
    assert_ne!(id, execution_id(&a, "template/t", 1));
    assert_ne!(id, execution_id(&a, "template/u", 0));
    assert_ne!(id, execution_id(&b, "template/t", 0));
    let g = Given::new();
    assert_eq!(
        next_execution_id(&g.state, &Given::account(), "template/t"),
        execution_id(&Given::account(), "template/t", 0)
    );
}
