//! Replicas splitting the accounts ([`powernode_runtime::partition`]),
//! against a real nats-server: two replicas of one deciding service each
//! own about half of the partitions and decide only for their accounts; one
//! is killed (its tasks aborted: no release, no last flush) and the other
//! takes its partitions once the leases expire; it is started again and
//! takes half back. Throughout, requests keep coming in 48 accounts, and at
//! the end every request has exactly one decision in the log, made by the
//! replica that owned its account's partition.

use anyhow::ensure;
use chrono::{DateTime, Utc};
use powernode_events::payloads::fleet::TemplateCreated;
use powernode_events::{AccountId, Actor, Envelope, EventPayload};
use powernode_log::{Expect, Filter, SharedLog};
use powernode_projections::FleetState;
use powernode_runtime::checkpoint::CheckpointStore;
use powernode_runtime::partition::lease::LeaseKeeper;
use powernode_runtime::partition::{partition_of, Ownership, PartitionConfig};
use powernode_runtime::{
    derived_event_id, run_consumer, ConsumerConfig, Decisions, Reactor, Shared,
};
use powernode_tests::jetstream_support::read_everything;
use powernode_tests::lifecycle_support::wait_until;
use powernode_tests::nats::NatsServer;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const PARTITIONS: u32 = 16;
const ACCOUNTS: usize = 48;
const TTL: Duration = Duration::from_millis(1200);

/// Decides one `dec-…` template per `req-…` template, id derived from the
/// request; counts how often it decided each (a handoff may decide again
/// what the old owner had not appended: the log must still hold one).
#[derive(Clone)]
struct Echo {
    replica: String,
    decided: Arc<Mutex<BTreeMap<String, u32>>>,
}

impl Reactor<FleetState> for Echo {
    type Effect = std::convert::Infallible;

    fn decide(
        &mut self,
        _: &FleetState,
        _: u64,
        event: &Envelope,
        now: DateTime<Utc>,
        out: &mut Decisions<Self::Effect>,
    ) {
        let EventPayload::TemplateCreated(t) = &event.payload else {
            return;
        };
        let Some(request) = t.template_id.strip_prefix("req-") else {
            return;
        };
        *self
            .decided
            .lock()
            .expect("not poisoned")
            .entry(request.to_string())
            .or_default() += 1;
        let mut decision = Envelope::new(
            event.account_id.clone(),
            Actor::service(&self.replica),
            TemplateCreated {
                template_id: format!("dec-{request}"),
                name: self.replica.clone(),
            },
        )
        .caused_by(event);
        decision.id = derived_event_id(event.id, "dec");
        decision.occurred_at = now;
        out.append(decision);
    }
}

/// One running replica: its consumer and lease keeper.
struct Replica {
    ownership: Ownership,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    _checkpoints: tempfile::TempDir,
}

impl Replica {
    async fn start(
        url: &str,
        name: &str,
        decided: &Arc<Mutex<BTreeMap<String, u32>>>,
    ) -> anyhow::Result<Self> {
        let log: SharedLog = Arc::new(powernode_tests::jetstream_support::connect(url).await?);
        let dir = tempfile::tempdir()?;
        let store = Arc::new(CheckpointStore::open(dir.path())?);
        let ownership = Ownership::new(PARTITIONS);
        let mut partition = PartitionConfig::new("echo", name);
        partition.partitions = PARTITIONS;
        partition.lease_ttl = TTL;
        let keeper = LeaseKeeper::open(log.clone(), partition, ownership.clone()).await?;
        let mut config = ConsumerConfig::new(format!("echo-{name}"));
        config.wait = Duration::from_millis(100);
        config.checkpoint_every = 20;
        config.partitions = Some(ownership.clone());
        let stop = CancellationToken::new();
        let reactor = Echo {
            replica: name.to_string(),
            decided: decided.clone(),
        };
        let consumer = tokio::spawn({
            let stop = stop.clone();
            let shared: Shared<FleetState> = Shared::default();
            async move {
                if let Err(e) = run_consumer(log, store, config, shared, reactor, stop).await {
                    panic!("consumer failed: {e}");
                }
            }
        });
        let keeper = tokio::spawn(keeper.run(stop.clone()));
        Ok(Self {
            ownership,
            stop,
            tasks: vec![consumer, keeper],
            _checkpoints: dir,
        })
    }

    /// SIGKILL, as far as a task can have it: nothing released or flushed.
    fn kill(self) {
        for t in &self.tasks {
            t.abort();
        }
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        for t in self.tasks {
            t.await?;
        }
        Ok(())
    }
}

fn account(i: usize) -> AccountId {
    AccountId::new(format!("acct-{i}")).expect("valid account id")
}

fn request(i: usize, n: usize) -> Envelope {
    Envelope::new(
        account(i % ACCOUNTS),
        Actor::service("workload"),
        TemplateCreated {
            template_id: format!("req-{n}"),
            name: format!("request {n}"),
        },
    )
}

/// Appends requests `range` across the accounts, a few milliseconds apart.
async fn workload(log: &SharedLog, range: std::ops::Range<usize>) -> anyhow::Result<()> {
    for n in range {
        log.append(&request(n, n), Expect::Any).await?;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Waits until the two replicas own every partition between them, `a`
/// having `want_a` of them (answers both sets).
async fn owning(
    a: &Ownership,
    b: &Ownership,
    want_a: std::ops::RangeInclusive<usize>,
) -> anyhow::Result<(Vec<u32>, Vec<u32>)> {
    let (a, b) = (a.clone(), b.clone());
    wait_until(Duration::from_secs(20), "the partitions to settle", || {
        let (a, b) = (a.owned(), b.owned());
        let all: BTreeSet<u32> = a.iter().chain(&b).copied().collect();
        let ok = all.len() == PARTITIONS as usize
            && a.len() + b.len() == PARTITIONS as usize
            && want_a.contains(&a.len());
        async move {
            if ok {
                Ok((a, b))
            } else {
                Err(format!("a {a:?}, b {b:?}"))
            }
        }
    })
    .await
    .map_err(anyhow::Error::msg)
}

/// Every request's decision in the log: request → (decider, count).
async fn decisions(log: &SharedLog) -> anyhow::Result<BTreeMap<String, (String, u32)>> {
    let mut out: BTreeMap<String, (String, u32)> = BTreeMap::new();
    for r in read_everything(&**log, &Filter::all()).await? {
        let e = Envelope::decode(&r.bytes)?;
        if let EventPayload::TemplateCreated(t) = &e.payload {
            if let Some(req) = t.template_id.strip_prefix("dec-") {
                let entry = out.entry(req.to_string()).or_insert((t.name.clone(), 0));
                entry.1 += 1;
            }
        }
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_split_the_accounts_and_hand_a_dead_ones_partitions_over() -> anyhow::Result<()> {
    powernode_tests::jetstream_support::init_tracing();
    let server = NatsServer::start()?;
    let url = server.url();
    let log: SharedLog = Arc::new(powernode_tests::jetstream_support::connect(&url).await?);
    let decided = Arc::new(Mutex::new(BTreeMap::new()));
    let a = Replica::start(&url, "a", &decided).await?;
    let b = Replica::start(&url, "b", &decided).await?;

    // 1. Both up: about half each.
    let (owned_a, owned_b) = owning(&a.ownership, &b.ownership, 7..=9).await?;
    println!("owned: a {owned_a:?}, b {owned_b:?}");
    workload(&log, 0..200).await?;

    // Decided (by the owners) before the kill.
    wait_until(
        Duration::from_secs(20),
        "the first 200 requests decided",
        || {
            let log = log.clone();
            async move {
                let d = decisions(&log).await.map_err(|e| e.to_string())?;
                if d.len() == 200 {
                    Ok(())
                } else {
                    Err(format!("{} of 200 decided", d.len()))
                }
            }
        },
    )
    .await
    .map_err(anyhow::Error::msg)?;

    // 2. a is killed mid-workload: b takes everything after the TTL.
    let killed_at = Instant::now();
    let a_owned = a.ownership.owned();
    a.kill();
    let load = tokio::spawn({
        let log = log.clone();
        async move { workload(&log, 200..400).await }
    });
    let b_own = b.ownership.clone();
    wait_until(Duration::from_secs(20), "b to own every partition", || {
        let n = b_own.owned().len();
        async move {
            if n == PARTITIONS as usize {
                Ok(())
            } else {
                Err(format!("b owns {n}"))
            }
        }
    })
    .await
    .map_err(anyhow::Error::msg)?;
    let handoff_ms = killed_at.elapsed().as_millis();
    load.await??;

    // 3. a again (a new process: empty checkpoints): it takes half back.
    let a = Replica::start(&url, "a", &decided).await?;
    let (again_a, _) = owning(&a.ownership, &b.ownership, 7..=9).await?;
    workload(&log, 400..600).await?;

    // Every request decided once, in the log.
    let all = wait_until(
        Duration::from_secs(30),
        "a decision for every request",
        || {
            let log = log.clone();
            async move {
                let d = decisions(&log).await.map_err(|e| e.to_string())?;
                if d.len() == 600 {
                    Ok(d)
                } else {
                    Err(format!("{} of 600 decided", d.len()))
                }
            }
        },
    )
    .await
    .map_err(anyhow::Error::msg)?;
    let doubled: Vec<_> = all.iter().filter(|(_, (_, n))| *n != 1).collect();
    ensure!(
        doubled.is_empty(),
        "decisions stored more than once: {doubled:?}"
    );
    // Before the kill, each decision was made by its partition's owner.
    for n in 0..200 {
        let p = partition_of(account(n % ACCOUNTS).as_str(), PARTITIONS);
        let want = if a_owned.contains(&p) { "a" } else { "b" };
        let (by, _) = &all[&n.to_string()];
        ensure!(
            by == want,
            "request {n} (partition {p}) decided by {by}, owned by {want}"
        );
    }
    let made: u32 = decided.lock().expect("not poisoned").values().sum();
    println!(
        "partitions: a {owned_a:?} → killed → b all 16 in {handoff_ms} ms → a again {again_a:?}; \
         600 requests, 600 decisions in the log, {made} made by the reactors ({} again after a handoff)",
        made - 600
    );
    a.stop().await?;
    b.stop().await?;
    Ok(())
}
