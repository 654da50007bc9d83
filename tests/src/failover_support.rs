//! VIP failover fixtures: a [`Platform`] with a failover configuration and
//! fast agents, an operator allowed to decide failovers, HA clusters of
//! real `powernode-agent` processes, and the waits the failover tests share
//! (VIP state, events, approvals, a quiet log, forged heartbeats).
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! use powernode_tests::failover_support::*;
//! let f = Fleet::start(config(FailoverPolicy::Auto)).await?;
//! let mut c = f.cluster("prod", 2, 0).await?;
//! f.kill(&mut c.servers[0]);
//! c.wait_held(&c.servers[1], 2).await?;
//! # Ok(()) }
//! ```

use crate::lifecycle_support::{
    request, str_at, wait_until, Member, Operator, Platform, AGENT, OPERATOR_PERMISSIONS, SERVER,
    WAIT,
};
use anyhow::{bail, ensure, Context as _};
use powernode_agent::identity::Identity;
use powernode_protocol::{subjects, Heartbeat, HeldVip};
pub use powernode_server::node::NodeExtras;
pub use powernode_server::services::failover::{FailoverConfig, FailoverPolicy};
use serde_json::{json, Value};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Silence threshold of the failover tests: a holder not heard for this
/// long is silent.
pub const SILENCE_MS: u64 = 800;
/// Heartbeat interval of the failover tests' agents (several beats fit in
/// [`SILENCE_MS`], so a live agent is never taken for silent).
pub const AGENT_BEAT_MS: u64 = 150;
/// The kind of a holder's silence.
pub const SILENT: &str = "sdwan.vip_holder_silent";
/// The failover permission.
pub const SDWAN_FAILOVER: &str = "system.sdwan_failover";

/// `policy` with the tests' short silence threshold, the other settings
/// at their defaults (approval TTL 900 s, cooldown 30 s, 3 per 600 s).
pub fn config(policy: FailoverPolicy) -> FailoverConfig {
    FailoverConfig {
        silence_threshold_ms: SILENCE_MS,
        policy,
        ..FailoverConfig::default()
    }
}

/// The lifecycle operator's permissions plus [`SDWAN_FAILOVER`].
pub fn failover_permissions() -> Vec<&'static str> {
    let mut p = OPERATOR_PERMISSIONS.to_vec();
    p.push(SDWAN_FAILOVER);
    p
}

/// A platform running `config`, an operator of a fresh account with
/// [`failover_permissions`], and one SD-WAN network.
pub struct Fleet {
    /// The platform (its own `op` lacks the failover permission).
    pub p: Platform,
    /// The operator every helper uses.
    pub op: Operator,
    /// The SD-WAN network every member is attached to.
    pub net: String,
}

/// A member and its peer on the fleet's network.
pub struct Server {
    /// The instance and its agent process.
    pub member: Member,
    /// Its peer id.
    pub peer: String,
}

impl Server {
    /// Its instance id.
    pub fn instance_id(&self) -> &str {
        &self.member.instance_id
    }
}

/// A cluster: `servers[0]` bootstrapped it and holds the VIP at generation 1.
pub struct Cluster {
    /// Cluster id.
    pub id: String,
    /// Its API-endpoint VIP.
    pub vip_id: String,
    /// Control-plane servers, the bootstrap server first.
    pub servers: Vec<Server>,
    /// Workers.
    pub workers: Vec<Server>,
    op: Operator,
}

impl Fleet {
    /// Starts the platform with `config`; agents heartbeat every [`AGENT_BEAT_MS`].
    pub async fn start(config: FailoverConfig) -> anyhow::Result<Self> {
        Self::start_with(config, Some(AGENT_BEAT_MS)).await
    }

    /// Starts the platform with `config`; agents heartbeat every
    /// `agent_heartbeat_ms` (`None`: the agent binary's default).
    pub async fn start_with(
        config: FailoverConfig,
        agent_heartbeat_ms: Option<u64>,
    ) -> anyhow::Result<Self> {
        let mut p = Platform::start_with(NodeExtras {
            failover: config,
            ..NodeExtras::default()
        })
        .await?;
        p.agent_heartbeat_ms = agent_heartbeat_ms;
        let op = p.operator_with("failover", &failover_permissions()).await?;
        let net = op.network("k3s-net", None).await?;
        Ok(Self { p, op, net })
    }

    /// Another operator of the same account, with `permissions`.
    pub async fn colleague(&self, permissions: &[&str]) -> anyhow::Result<Operator> {
        let t = crate::http::action(
            self.p.port,
            Some(&self.p.admin),
            "system_create_operator_token",
            &json!({ "account_id": self.op.account_id, "permissions": permissions }),
        )
        .await?;
        ensure!(
            t.status == 200,
            "system_create_operator_token: {:?}",
            t.body
        );
        Ok(Operator {
            port: self.p.port,
            token: str_at(&t.body, "/data/token")?,
            account_id: self.op.account_id.clone(),
        })
    }

    /// A cluster named `name`: a bootstrap server, then `servers - 1` more
    /// servers and `workers` workers targeting it, all on the network. Returns
    /// once every node is ready, every extra server is a failover candidate
    /// and the bootstrap server's agent reports holding the VIP at generation 1.
    pub async fn cluster(
        &self,
        name: &str,
        servers: usize,
        workers: usize,
    ) -> anyhow::Result<Cluster> {
        let (first, c) = self
            .p
            .bootstrap(&self.op, &format!("{name}-server-1"), Some(&self.net))
            .await?;
        let id = str_at(&c, "/id")?;
        let mut members = vec![(first, true)];
        for i in 2..=servers {
            let host = format!("{name}-server-{i}");
            let m = self.member(&host, SERVER, &id).await?;
            members.push((m, true));
        }
        for i in 1..=workers {
            let m = self
                .member(&format!("{name}-worker-{i}"), AGENT, &id)
                .await?;
            members.push((m, false));
        }
        let (mut s, mut w) = (Vec::new(), Vec::new());
        for (m, server) in members {
            self.op
                .wait_node_ready(&id, &m.instance_id)
                .await
                .with_context(|| format!("agent log:\n{}", m.agent.log_tail(20)))?;
            let peer = str_at(&self.op.attach(&self.net, &m.instance_id).await?, "/id")?;
            let s_or_w = if server { &mut s } else { &mut w };
            s_or_w.push(Server { member: m, peer });
        }
        let v = self
            .op
            .ok("system_sdwan_get_virtual_ip", json!({ "cluster_id": id }))
            .await?;
        let cluster = Cluster {
            id,
            vip_id: str_at(&v, "/virtual_ip/id")?,
            servers: s,
            workers: w,
            op: self.op.clone(),
        };
        let holder = cluster.servers[0].peer.clone();
        let others: Vec<String> = cluster.servers[1..]
            .iter()
            .map(|s| s.peer.clone())
            .collect();
        cluster
            .wait_vip(
                "generation 1 held by the bootstrap server, the other servers candidates",
                |v| {
                    v["holder_peer_id"] == holder.as_str()
                        && v["generation"] == 1
                        && v["applied_generations"] == json!({ holder.clone(): 1 })
                        && v["failover_holder_peer_ids"] == json!(others)
                },
            )
            .await?;
        Ok(cluster)
    }

    /// A member `host` with `module` targeting `cluster_id`, on the network.
    async fn member(&self, host: &str, module: &str, cluster_id: &str) -> anyhow::Result<Member> {
        self.p
            .start_member(
                &self.op,
                host,
                module,
                Some(cluster_id),
                Some(&self.net),
                2048,
            )
            .await
    }

    /// Kills `server`'s agent with SIGKILL.
    pub fn kill(&self, server: &mut Server) {
        server.member.agent.kill();
    }

    /// Starts `server`'s agent again with its state dir (no credential: it
    /// is enrolled).
    pub fn restart(&self, server: &mut Server) -> anyhow::Result<()> {
        server.member.agent.restart(&self.p.nats_url(), None)
    }

    /// Runs `f` and fails if the log grew meanwhile (waiting for the log to
    /// be quiet before and after).
    pub async fn unchanged<T>(&self, what: &str, f: impl Future<Output = T>) -> anyhow::Result<T> {
        let before = self.p.settle().await?;
        let out = f.await;
        let after = self.p.settle().await?;
        ensure!(
            before == after,
            "{what} appended events: last seq {before} → {after}"
        );
        Ok(out)
    }
}

impl Cluster {
    /// The VIP as `system_sdwan_get_virtual_ip` shows it.
    pub async fn vip(&self) -> anyhow::Result<Value> {
        let v = self
            .op
            .ok("system_sdwan_get_virtual_ip", json!({ "id": self.vip_id }))
            .await?;
        Ok(v["virtual_ip"].clone())
    }

    /// Waits until the VIP satisfies `pred`; the VIP.
    pub async fn wait_vip(
        &self,
        expected: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let pred = &pred;
        wait_until(
            WAIT,
            &format!("VIP {}: {expected}", self.vip_id),
            || async move {
                let v = self.vip().await.map_err(|e| format!("{e:#}"))?;
                if pred(&v) {
                    Ok(v)
                } else {
                    Err(v.to_string())
                }
            },
        )
        .await
    }

    /// Fails if a `sdwan.vip_holder_silent` about the VIP appears within
    /// `window` (`what` says what that would contradict).
    pub async fn never_silent_for(&self, window: Duration, what: &str) -> anyhow::Result<()> {
        holds_for(window, what, || async {
            let silent = vip_events(&self.op, SILENT, &self.vip_id)
                .await
                .map_err(|e| format!("{e:#}"))?;
            if silent.is_empty() {
                Ok(())
            } else {
                Err(format!("the sensor reported {silent:?}"))
            }
        })
        .await
    }

    /// Waits until `server` holds the VIP at `generation`, as the platform
    /// decided it and as its agent reports it; the VIP.
    pub async fn wait_held(&self, server: &Server, generation: u64) -> anyhow::Result<Value> {
        let peer = server.peer.as_str();
        self.wait_vip(
            &format!("held by {peer} at generation {generation}, applied by its agent"),
            |v| {
                v["holder_peer_id"] == peer
                    && v["generation"] == generation
                    && v["applied_generations"][peer] == generation
            },
        )
        .await
        .with_context(|| format!("agent log:\n{}", server.member.agent.log_tail(15)))
    }
}

/// Polls `check` every 200 ms for `window`, failing at the first `Err`
/// (what appeared that should not have).
pub async fn holds_for<F, Fut>(window: Duration, what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let start = Instant::now();
    while start.elapsed() < window {
        if let Err(seen) = check().await {
            bail!(
                "{what} did not hold for {window:?}: after {:?}, {seen}",
                start.elapsed()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// Events of `kind` (a kind prefix for `recent_events`) matching `pred`.
pub async fn events_of(
    op: &Operator,
    kind: &str,
    pred: impl Fn(&Value) -> bool,
) -> anyhow::Result<Vec<Value>> {
    Ok(op
        .events(kind)
        .await?
        .into_iter()
        .filter(|e| e["kind"] == kind && pred(e))
        .collect())
}

/// Waits for an event of `kind` whose payload's `virtual_ip_id` is
/// `vip_id` and that satisfies `pred`; the first such event.
pub async fn wait_event(
    op: &Operator,
    kind: &str,
    vip_id: &str,
    pred: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let pred = &pred;
    wait_until(
        WAIT,
        &format!("a {kind} event about {vip_id}"),
        || async move {
            let all = op.events(kind).await.map_err(|e| format!("{e:#}"))?;
            let seen: Vec<&Value> = all
                .iter()
                .filter(|e| e["kind"] == kind && e["payload"]["virtual_ip_id"] == vip_id)
                .collect();
            seen.iter()
                .find(|e| pred(e))
                .map(|e| (*e).clone())
                .ok_or_else(|| format!("{} {kind} event(s) about it: {seen:?}", seen.len()))
        },
    )
    .await
}

/// The events of `kind` about `vip_id`.
pub async fn vip_events(op: &Operator, kind: &str, vip_id: &str) -> anyhow::Result<Vec<Value>> {
    events_of(op, kind, |e| e["payload"]["virtual_ip_id"] == vip_id).await
}

/// `system_list_approvals({status})`.
pub async fn approvals(op: &Operator, status: &str) -> anyhow::Result<Vec<Value>> {
    let a = op
        .ok("system_list_approvals", json!({ "status": status }))
        .await?;
    Ok(a["approvals"].as_array().cloned().unwrap_or_default())
}

/// Waits until the account has exactly one approval, in `status`; that one.
pub async fn wait_approval(op: &Operator, status: &str) -> anyhow::Result<Value> {
    wait_until(
        WAIT,
        &format!("exactly one approval, {status}"),
        || async move {
            let all = approvals(op, "all").await.map_err(|e| format!("{e:#}"))?;
            match all.as_slice() {
                [one] if one["status"] == status => Ok(one.clone()),
                _ => Err(format!("{all:?}")),
            }
        },
    )
    .await
}

/// Heartbeats for an instance signed with a key that is not its own,
/// sent every 100 ms until dropped; the intake's replies are kept.
pub struct ForgedBeats {
    replies: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ForgedBeats {
    /// Starts forging beats for `instance_id` claiming to hold `held`.
    pub async fn start(
        nats_url: &str,
        instance_id: &str,
        held: Vec<HeldVip>,
    ) -> anyhow::Result<Self> {
        let client = crate::nats::connect(nats_url).await?;
        let forger = Identity::ephemeral();
        let instance_id = instance_id.to_string();
        let replies: Arc<Mutex<Vec<Value>>> = Arc::default();
        let into = replies.clone();
        let task = tokio::spawn(async move {
            loop {
                let sent_at_ms = chrono::Utc::now().timestamp_millis();
                let signature =
                    forger.sign_bytes(&Heartbeat::signing_bytes(&instance_id, sent_at_ms, &held));
                // As JSON: the wire format, whatever fields the struct gains.
                let hb = json!({
                    "instance_id": instance_id,
                    "sent_at_ms": sent_at_ms,
                    "held_vips": held,
                    "signature": signature,
                });
                let body = serde_json::to_vec(&hb).expect("heartbeats serialize");
                let reply = request(&client, subjects::HEARTBEAT, body)
                    .await
                    .unwrap_or_else(|e| json!({ "transport_error": format!("{e:#}") }));
                into.lock().expect("forged beats lock").push(reply);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Ok(Self { replies, task })
    }

    /// Every reply so far.
    pub fn replies(&self) -> Vec<Value> {
        self.replies.lock().expect("forged beats lock").clone()
    }
}

impl Drop for ForgedBeats {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The `(status, code)` of a refused action (status 0 when the API was not
/// heard: `transport`, `timeout`), or a description of its success.
pub fn refusal(r: &Result<Value, crate::lifecycle_support::ActionError>) -> (u16, String) {
    match r {
        Ok(v) => (200, format!("succeeded: {v}")),
        Err(e) => (e.status().unwrap_or(0), e.code().to_string()),
    }
}
