//! The live rig as the fault tests see it: the fleet `scripts/rig up`
//! described (`.rig/fleet.json`), the API (operator and admin), the NATS
//! cluster (as the test driver's NKey user), `docker` for faults, and the
//! ledger of what was acknowledged — checked against the stream and every
//! projection after each scenario.

use anyhow::{bail, ensure, Context as _};
use powernode_client::{ActionError, Api};
use powernode_log::jetstream::{durable_name, JetStreamConfig, JetStreamLog, DEFAULT_STREAM};
use powernode_log::nats::connect::ClientAuth;
use powernode_log::nats::PlatformCreds;
use powernode_log::{EventLog as _, Filter, StartAt};
use powernode_tests::lifecycle_support::wait_until;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The durable cursors of the rig's services (one per replica).
pub const CURSORS: [&str; 10] = [
    "api",
    "provisioner-1",
    "provisioner-2",
    "sdwan",
    "sensor",
    "failover-1",
    "failover-2",
    "skills",
    "sdwan-2",
    "skills-2",
];

/// How long a scenario step may take before the test fails.
pub const STEP: Duration = Duration::from_secs(60);

/// One agent container.
#[derive(Debug, Clone)]
pub struct Agent {
    /// `a-server-1`, …
    pub slot: String,
    /// Its instance.
    pub instance_id: String,
    /// Its template (one per agent, so assignments are per agent).
    pub template_id: String,
    /// The container (`pn-agent-<slot>`).
    pub container: String,
    /// Its state dir on the host.
    pub state_dir: PathBuf,
}

/// Something the platform acknowledged: it must be in the stream.
#[derive(Debug, Clone)]
pub struct Acked {
    /// What was done (for messages).
    pub what: String,
    /// The aggregate id the event is about.
    pub aggregate_id: String,
    /// The event kind (exact).
    pub kind: String,
}

/// The rig.
pub struct Rig {
    /// `.rig/fleet.json`.
    pub fleet: Value,
    /// The operator of the rig's account.
    pub op: Api,
    /// The operator's token (for the CLI).
    pub op_token: String,
    /// The API URL (https).
    pub api_url: String,
    /// The CA the API made in its data dir (trusted for its https).
    pub api_ca: PathBuf,
    /// The event log, read as the test driver.
    pub log: JetStreamLog,
    /// A plain client as the test driver.
    pub nats: async_nats::Client,
    /// Agents by slot.
    pub agents: BTreeMap<String, Agent>,
    /// Everything acknowledged so far.
    pub ledger: Vec<Acked>,
    /// The rig's state dir on the host.
    pub rig_dir: PathBuf,
    retries: AtomicUsize,
}

impl Rig {
    /// The rig `POWERNODE_RIG` (path of `fleet.json`) describes, or `None`
    /// when it is not set.
    pub async fn from_env() -> anyhow::Result<Option<Self>> {
        let Some(path) = std::env::var_os("POWERNODE_RIG") else {
            return Ok(None);
        };
        let path = PathBuf::from(path);
        let fleet: Value = serde_json::from_str(
            &std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?,
        )?;
        let rig_dir = path
            .parent()
            .context("fleet.json has no dir")?
            .to_path_buf();
        let read = |key: &str| -> anyhow::Result<String> {
            let p = fleet[key]
                .as_str()
                .with_context(|| format!("fleet.{key}"))?;
            Ok(std::fs::read_to_string(p)
                .with_context(|| p.to_string())?
                .trim()
                .to_string())
        };
        let op_token = read("operator_token_file")?;
        let api_url = fleet["api_url"].as_str().context("api_url")?.to_string();
        let api_ca = PathBuf::from(fleet["api_ca_file"].as_str().context("api_ca_file")?);
        let creds = PlatformCreds::read(&rig_dir.join("keys/rig-test.creds"))?;
        let seed = creds.user_seed.clone();
        let urls: Vec<String> = fleet["nats_urls"]
            .as_array()
            .context("nats_urls")?
            .iter()
            .filter_map(|u| u.as_str().map(str::to_string))
            .collect();
        let config = JetStreamConfig {
            replicas: 3,
            ignore_discovered_servers: true,
            auth: ClientAuth::with_creds(creds),
            connect_timeout: Duration::from_secs(10),
            ..powernode_tests::nats::log_config(urls.join(","))
        };
        let log = JetStreamLog::connect(config).await?;
        let nats = async_nats::ConnectOptions::with_nkey(seed)
            .ignore_discovered_servers()
            .connect(urls.iter().map(String::as_str).collect::<Vec<_>>())
            .await?;
        let state_dir = PathBuf::from(fleet["state_dir"].as_str().context("state_dir")?);
        let mut agents = BTreeMap::new();
        for (slot, a) in fleet["agents"].as_object().context("agents")? {
            agents.insert(
                slot.clone(),
                Agent {
                    slot: slot.clone(),
                    instance_id: a["instance_id"].as_str().context("instance_id")?.into(),
                    template_id: a["template_id"].as_str().context("template_id")?.into(),
                    container: a["container"].as_str().context("container")?.into(),
                    state_dir: state_dir.join(format!("agent-{slot}")),
                },
            );
        }
        Ok(Some(Self {
            op: Api::from_config(
                &powernode_client::ClientConfig::new(&api_url, &op_token).with_ca_cert(&api_ca),
            )?,
            op_token,
            api_url,
            api_ca,
            log,
            nats,
            agents,
            ledger: Vec::new(),
            rig_dir,
            fleet,
            retries: AtomicUsize::new(0),
        }))
    }

    /// The agent in `slot`.
    pub fn agent(&self, slot: &str) -> &Agent {
        &self.agents[slot]
    }

    /// The agent whose instance is `instance_id`.
    pub fn agent_of(&self, instance_id: &str) -> anyhow::Result<&Agent> {
        self.agents
            .values()
            .find(|a| a.instance_id == instance_id)
            .with_context(|| format!("no agent for instance {instance_id}"))
    }

    /// The NATS NKey seed of `user`: an agent slot's is its identity key
    /// (what the auth callout admits it by); a service's or `rig-test`'s
    /// is the platform user's, from its credentials file.
    pub fn seed(&self, user: &str) -> anyhow::Result<String> {
        if self.agents.contains_key(user) {
            let state = PathBuf::from(self.fleet["state_dir"].as_str().context("state_dir")?);
            let key = state.join(format!("agent-{user}/identity.key"));
            ensure!(
                key.exists(),
                "{} has not made its identity key yet",
                key.display()
            );
            return Ok(powernode_agent::identity::Identity::load_or_create(&key)?.nats_seed());
        }
        Ok(PlatformCreds::read(&self.rig_dir.join(format!("keys/{user}.creds")))?.user_seed)
    }

    /// The NATS URLs, as given to clients on the host.
    pub fn nats_urls(&self) -> Vec<String> {
        self.fleet["nats_urls"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|u| u.as_str().map(str::to_string))
            .collect()
    }

    /// Runs an operator action. A clear retryable refusal (503
    /// `unavailable`, e.g. while a NATS node is down) is retried, as a
    /// client is told to, for up to [`STEP`]; the retries are counted.
    pub async fn call(&self, action: &str, args: Value) -> anyhow::Result<Value> {
        let started = Instant::now();
        loop {
            match self.op.call(action, &args).await {
                Ok(v) => return Ok(v),
                Err(e) if retryable(&e) && started.elapsed() < STEP => {
                    self.retries.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => return Err(anyhow::Error::from(e).context(format!("{action} {args}"))),
            }
        }
    }

    /// How many retryable refusals [`Self::call`] has retried so far.
    pub fn retries(&self) -> usize {
        self.retries.load(Ordering::SeqCst)
    }

    /// Assigns `module` (and a target cluster) to the agent's template;
    /// records the acknowledged assignment.
    pub async fn assign(
        &mut self,
        slot: &str,
        module: &str,
        target: Option<&str>,
    ) -> anyhow::Result<()> {
        let template_id = self.agent(slot).template_id.clone();
        let mut args = json!({ "template_id": template_id, "module_name": module });
        if let Some(t) = target {
            args["config"] = json!({ "target_cluster_id": t });
        }
        self.call("system_assign_module_to_template", args).await?;
        self.ledger.push(Acked {
            what: format!("{module} assigned to {slot}"),
            aggregate_id: template_id,
            kind: "system.k3s.module.assigned".into(),
        });
        Ok(())
    }

    /// The agent's persisted state (`state.json` in its state dir).
    pub fn agent_state(&self, slot: &str) -> anyhow::Result<Value> {
        let path = self.agent(slot).state_dir.join("state.json");
        Ok(serde_json::from_str(
            &std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?,
        )?)
    }

    /// Waits until the agent's persisted phase is `phase`; records its
    /// `ready` report as acknowledged.
    pub async fn wait_phase(&mut self, slot: &str, phase: &str) -> anyhow::Result<Value> {
        let state = wait_until(STEP, &format!("agent {slot} in phase {phase}"), || async {
            match self.agent_state(slot) {
                Ok(s) if s["phase"] == phase => Ok(s),
                Ok(s) => Err(format!(
                    "phase {}, last rejection {}",
                    s["phase"], s["last_rejection"]
                )),
                Err(e) => Err(format!("{e:#}")),
            }
        })
        .await?;
        if phase == "ready" {
            let instance = self.agent(slot).instance_id.clone();
            self.ledger.push(Acked {
                what: format!("{slot} reported ready"),
                aggregate_id: instance,
                kind: "system.k3s.handshake.ready".into(),
            });
        }
        Ok(state)
    }

    /// The cluster the agent's instance is in, once the platform has it there.
    pub async fn cluster_of(&self, slot: &str) -> anyhow::Result<String> {
        let instance = self.agent(slot).instance_id.clone();
        wait_until(STEP, &format!("a cluster for {slot}"), || async {
            let i = self
                .instance(&instance)
                .await
                .map_err(|e| format!("{e:#}"))?;
            match i["cluster_id"].as_str() {
                Some(c) => Ok(c.to_string()),
                None => Err(format!("k3s phase {}", i["k3s_phase"])),
            }
        })
        .await
    }

    /// The instance as `system_list_instances` shows it.
    pub async fn instance(&self, instance_id: &str) -> anyhow::Result<Value> {
        let list = self.call("system_list_instances", json!({})).await?;
        list["instances"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["id"] == instance_id)
            .cloned()
            .with_context(|| format!("no instance {instance_id}"))
    }

    /// The cluster's VIP (`system_sdwan_get_virtual_ip` by cluster).
    pub async fn vip(&self, cluster_id: &str) -> anyhow::Result<Value> {
        Ok(self
            .call(
                "system_sdwan_get_virtual_ip",
                json!({ "cluster_id": cluster_id }),
            )
            .await?["virtual_ip"]
            .clone())
    }

    /// `docker <args>`; answers stdout.
    pub fn docker(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = std::process::Command::new("docker")
            .args(args)
            .output()
            .context("cannot run docker")?;
        ensure!(
            out.status.success(),
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Whether the container runs.
    pub fn running(&self, container: &str) -> anyhow::Result<bool> {
        Ok(self.docker(&["inspect", "-f", "{{.State.Running}}", container])? == "true")
    }

    /// `powernode <args>` (the host's release build) as the operator.
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let bin = std::env::var_os("POWERNODE_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/powernode")
            });
        let out = std::process::Command::new(&bin)
            .args(args)
            .env("POWERNODE_URL", &self.api_url)
            .env("POWERNODE_CA_CERT", &self.api_ca)
            .env("POWERNODE_TOKEN", &self.op_token)
            .output()
            .with_context(|| format!("cannot run {}", bin.display()))?;
        ensure!(
            out.status.success(),
            "powernode {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    }

    /// Every event in the stream, as JSON (envelope plus `seq`).
    pub async fn events(&self) -> anyhow::Result<Vec<Value>> {
        let mut out = Vec::new();
        let mut from = 1;
        loop {
            let batch = self.log.read(from, 1000, &Filter::all()).await?;
            let Some(last) = batch.last().map(|r| r.seq) else {
                break;
            };
            for r in &batch {
                let e = powernode_events::Envelope::decode(&r.bytes)
                    .with_context(|| format!("record {} does not decode", r.seq))?;
                let mut v = serde_json::to_value(&e)?;
                v["seq"] = json!(r.seq);
                v["kind"] = json!(e.kind());
                out.push(v);
            }
            from = last + 1;
        }
        Ok(out)
    }

    /// The events of `kind` (exact).
    pub async fn events_of(&self, kind: &str) -> anyhow::Result<Vec<Value>> {
        Ok(self
            .events()
            .await?
            .into_iter()
            .filter(|e| e["kind"] == kind)
            .collect())
    }

    /// The sequence of the last event in the stream.
    pub async fn last_seq(&self) -> anyhow::Result<u64> {
        Ok(self.log.last_seq().await?)
    }

    /// Checks that nothing acknowledged is missing from the stream, that no
    /// event id is stored twice, and that the API's projection and every
    /// service's durable cursor (acknowledged only after its checkpoint)
    /// reach the stream's last sequence. Answers the figures.
    pub async fn check_no_loss(&self) -> anyhow::Result<LossCheck> {
        let started = Instant::now();
        let events = self.events().await?;
        let mut ids = HashSet::new();
        let mut duplicate_ids = 0;
        let mut by_aggregate: HashMap<(&str, &str), usize> = HashMap::new();
        for e in &events {
            if !ids.insert(e["id"].as_str().unwrap_or_default().to_string()) {
                duplicate_ids += 1;
            }
            let agg = e["aggregate"]["id"].as_str().unwrap_or_default();
            let kind = e["kind"].as_str().unwrap_or_default();
            *by_aggregate.entry((agg, kind)).or_default() += 1;
            // Agent reports name their instance in the payload too.
            if let Some(i) = e["payload"]["instance_id"].as_str() {
                *by_aggregate.entry((i, kind)).or_default() += 1;
            }
        }
        let lost: Vec<&Acked> = self
            .ledger
            .iter()
            .filter(|a| !by_aggregate.contains_key(&(a.aggregate_id.as_str(), a.kind.as_str())))
            .collect();
        let last = events.last().and_then(|e| e["seq"].as_u64()).unwrap_or(0);
        // Every projection reaches `last`.
        let api = wait_until(
            STEP,
            &format!("the API projection at seq {last}"),
            || async {
                let h = self.healthz().await.map_err(|e| format!("{e:#}"))?;
                let applied = h["applied_seq"].as_u64().unwrap_or(0);
                if applied >= last {
                    Ok(applied)
                } else {
                    Err(format!("applied {applied}"))
                }
            },
        )
        .await?;
        let js = async_nats::jetstream::new(self.nats.clone());
        let mut cursors = BTreeMap::new();
        for name in CURSORS {
            let durable = durable_name(name);
            let floor = wait_until(
                STEP,
                &format!("cursor {durable} acknowledged through seq {last}"),
                || {
                    let js = js.clone();
                    let durable = durable.clone();
                    async move {
                        let stream = js
                            .get_stream(DEFAULT_STREAM)
                            .await
                            .map_err(|e| e.to_string())?;
                        let info = stream
                            .consumer_info(&durable)
                            .await
                            .map_err(|e| e.to_string())?
                            .clone();
                        let floor = info.ack_floor.stream_sequence;
                        if floor >= last {
                            Ok(floor)
                        } else {
                            Err(format!(
                                "ack floor {floor}, pending {}, ack pending {}",
                                info.num_pending, info.num_ack_pending
                            ))
                        }
                    }
                },
            )
            .await?;
            cursors.insert(name.to_string(), floor);
        }
        let state_hash = self.check_state_hash().await?;
        let check = LossCheck {
            state_hash,
            acknowledged: self.ledger.len(),
            lost: lost.len(),
            duplicate_ids,
            last_seq: last,
            api_applied: api,
            cursors,
            checked_in_ms: started.elapsed().as_millis() as u64,
        };
        if !lost.is_empty() || duplicate_ids > 0 {
            bail!(
                "events lost: {} of {} acknowledged ({:?}); duplicate ids in the stream: {duplicate_ids}",
                lost.len(),
                self.ledger.len(),
                lost.iter().take(5).map(|a| &a.what).collect::<Vec<_>>()
            );
        }
        Ok(check)
    }

    /// The API's live fleet state is the fold of the stream: its digest
    /// (`system_state_hash`) equals a replay of the stream to the same
    /// sequence. Positions alone would not show a record a cursor skipped.
    pub async fn check_state_hash(&self) -> anyhow::Result<String> {
        let admin = std::fs::read_to_string(self.rig_dir.join("state/api/admin.token"))
            .context("the API's admin token in .rig/state/api")?;
        let live = self
            .op
            .with_token(admin.trim())
            .call("system_state_hash", &json!({}))
            .await?;
        let seq = live["seq"].as_u64().context("system_state_hash: seq")?;
        let records = self
            .log
            .subscribe(StartAt::Beginning, Filter::all())
            .await?;
        let options = powernode_runtime::replay::RebuildOptions {
            until: seq,
            ..Default::default()
        };
        let (state, _) = powernode_runtime::replay::rebuild_from(
            records,
            powernode_projections::FleetState::default(),
            options,
            |_| {},
        )
        .await?;
        let replayed = format!("sha256:{}", powernode_projections::state_hash(&state));
        ensure!(
            live["hash"].as_str() == Some(replayed.as_str()),
            "the API's fleet state at seq {seq} ({}) differs from a replay of the stream to it ({replayed}): a record was skipped or applied twice",
            live["hash"]
        );
        Ok(replayed)
    }

    /// `GET /healthz`.
    pub async fn healthz(&self) -> anyhow::Result<Value> {
        let a = self.op.request("GET", "/healthz", b"").await?;
        ensure!(a.status == 200, "healthz {}: {}", a.status, a.body);
        Ok(a.body)
    }

    /// The event stream's cluster view: leader and replicas (name, current, lag).
    pub async fn stream_cluster(&self) -> anyhow::Result<Value> {
        self.cluster_of_stream(DEFAULT_STREAM).await
    }

    /// A stream's cluster view (the secret store's bucket is the stream
    /// `KV_<bucket>`): leader and replicas (name, current, lag).
    pub async fn cluster_of_stream(&self, name: &str) -> anyhow::Result<Value> {
        let js = async_nats::jetstream::new(self.nats.clone());
        let mut stream = js.get_stream(name).await?;
        let info = stream.info().await?;
        let cluster = info.cluster.clone().unwrap_or_default();
        Ok(json!({
            "leader": cluster.leader,
            "replicas": cluster.replicas.iter().map(|r| json!({
                "name": r.name,
                "current": r.current,
                "offline": r.offline,
                "lag": r.lag.unwrap_or(0),
            })).collect::<Vec<_>>(),
        }))
    }

    /// Where the rig keeps its report.
    pub fn report_path(&self) -> PathBuf {
        self.rig_dir.join("report.json")
    }
}

/// What [`Rig::check_no_loss`] found.
#[derive(Debug, Clone)]
pub struct LossCheck {
    /// Acknowledged actions and reports recorded so far.
    pub acknowledged: usize,
    /// Of them, not in the stream (must be 0).
    pub lost: usize,
    /// Event ids stored twice (must be 0).
    pub duplicate_ids: usize,
    /// The stream's last sequence.
    pub last_seq: u64,
    /// The API projection's applied sequence.
    pub api_applied: u64,
    /// Every durable cursor's acknowledged floor.
    pub cursors: BTreeMap<String, u64>,
    /// How long the check (and the catch-up it waited for) took.
    pub checked_in_ms: u64,
    /// The API's fleet digest, equal to a replay of the stream.
    pub state_hash: String,
}

/// Whether an action error is a clear, retryable refusal (503 `unavailable`,
/// or the API unreachable while it restarts).
pub fn retryable(e: &ActionError) -> bool {
    e.refusal()
        .is_some_and(|a| a.status == 503 || a.code == "unavailable")
}

/// Milliseconds since `t`.
pub fn ms(t: Instant) -> u64 {
    t.elapsed().as_millis() as u64
}

impl LossCheck {
    /// As JSON, for the report.
    pub fn to_json(&self) -> Value {
        json!({
            "acknowledged": self.acknowledged,
            "lost": self.lost,
            "duplicate_ids": self.duplicate_ids,
            "last_seq": self.last_seq,
            "api_applied": self.api_applied,
            "cursors": self.cursors,
            "checked_in_ms": self.checked_in_ms,
            "state_hash_equals_replay": self.state_hash,
        })
    }
}
