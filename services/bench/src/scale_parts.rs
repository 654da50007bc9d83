//! The parts of `powernode bench scale` ([`crate::scale`]): waiting for
//! every service to catch up, the checkpoint figures of a phase, the
//! padding and the fold rate over it, the API's latencies, and the sizes
//! of what the checkpoints hold.

use super::lifecycle::{percentile, Operator};
use anyhow::{bail, Context};
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use powernode_actions::ActionName;
use powernode_events::payloads::k3s::KubeconfigRetrieved;
use powernode_events::subject::event_subject;
use powernode_events::{AccountId, Actor, Envelope};
use powernode_log::jetstream::JetStreamLog;
use powernode_log::SharedLog;
use powernode_projections::{FleetState, Projection};
use powernode_runtime::checkpoint::{self, CheckpointStats, CheckpointStore};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// Publishes awaiting their ack at once while padding.
const WINDOW: usize = 4096;

/// Resident set size of this process in bytes (Linux `VmRSS`; 0 elsewhere).
pub(super) fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Waits until every service applied the log's head (and the head stays).
pub(super) async fn caught_up(
    log: &SharedLog,
    services: &[String],
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let head = log.last_seq().await?;
        let applied = checkpoint::applied();
        let behind: Vec<_> = services
            .iter()
            .filter(|s| applied.get(*s).copied().unwrap_or(0) < head)
            .collect();
        if behind.is_empty() && log.last_seq().await? == head {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("services {behind:?} did not reach seq {head} in {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Every service's checkpoint figures now (a phase starts here).
pub(super) fn checkpoint_marks() -> BTreeMap<String, CheckpointStats> {
    checkpoint::stats()
}

/// The checkpoints saved during a phase, by service.
pub(super) struct Phase {
    now: BTreeMap<String, CheckpointStats>,
    before: BTreeMap<String, CheckpointStats>,
}

impl Phase {
    /// From `before` (a [`checkpoint_marks`]) until now.
    pub(super) fn since(before: &BTreeMap<String, CheckpointStats>) -> Self {
        Self {
            now: checkpoint::stats(),
            before: before.clone(),
        }
    }

    /// `name`'s checkpoints in the phase: how many, what they wrote, what
    /// they stalled the consumer for.
    pub(super) fn of(&self, name: &str) -> Value {
        let zero = CheckpointStats::default();
        let now = self.now.get(name).unwrap_or(&zero);
        let before = self.before.get(name).unwrap_or(&zero);
        let saved = now.saved - before.saved;
        let tail = |v: &[f64]| {
            let n = (saved as usize).min(v.len());
            let mut t = v[v.len() - n..].to_vec();
            t.sort_by(f64::total_cmp);
            t
        };
        let (stall, save) = (tail(&now.stall_ms), tail(&now.save_ms));
        let bytes = now.total_bytes - before.total_bytes;
        json!({
            "saved": saved,
            "full": now.full - before.full,
            "bytes_written": bytes,
            "bytes_per_checkpoint": bytes.checked_div(saved).unwrap_or(0),
            "last_entries": now.last_entries,
            "stall_p50_ms": percentile(&stall, 0.50),
            "stall_p99_ms": percentile(&stall, 0.99),
            "stall_max_ms": stall.last().map_or(0.0, |m| (m * 100.0).round() / 100.0),
            "write_p99_ms": percentile(&save, 0.99),
        })
    }
}

/// The account `op` acts in.
pub(super) async fn account_of(op: &Operator) -> anyhow::Result<AccountId> {
    let me = op.call(ActionName::Whoami.as_str(), json!({})).await?;
    let id = me["account_id"].as_str().context("whoami: account_id")?;
    Ok(AccountId::new(id)?)
}

/// Every cluster id, through the pages of `kubernetes_list_clusters` (or
/// one unpaginated call where the API has no pages).
pub(super) async fn all_clusters(op: &Operator, page: usize) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    let mut args = json!({ "limit": page });
    loop {
        let answer = match op
            .call(ActionName::ListClusters.as_str(), args.clone())
            .await
        {
            Ok(a) => a,
            Err(_) if ids.is_empty() && args.get("page_token").is_none() => {
                op.call(ActionName::ListClusters.as_str(), json!({}))
                    .await?
            }
            Err(e) => return Err(e),
        };
        for c in answer["clusters"].as_array().context("clusters")? {
            ids.push(c["id"].as_str().context("cluster id")?.to_string());
        }
        match answer["next_page_token"].as_str() {
            Some(token) => args = json!({ "limit": page, "page_token": token }),
            None => return Ok(ids),
        }
    }
}

/// `kubernetes_list_clusters` latencies, page by page.
pub(super) struct ListLatency {
    /// Whether the API paginated (an API without pages answers all).
    pub paginated: bool,
    /// Sorted latencies, ms.
    pub ms: Vec<f64>,
}

/// `calls` pages of `page` clusters, walking the pages (and from the
/// start again at the end).
pub(super) async fn list_latency(
    op: &Operator,
    page: usize,
    calls: usize,
) -> anyhow::Result<ListLatency> {
    let paginated = op
        .call(ActionName::ListClusters.as_str(), json!({ "limit": page }))
        .await
        .is_ok();
    let mut token: Option<String> = None;
    let mut ms = Vec::with_capacity(calls);
    for _ in 0..calls {
        let args = match (&token, paginated) {
            (_, false) => json!({}),
            (None, true) => json!({ "limit": page }),
            (Some(t), true) => json!({ "limit": page, "page_token": t }),
        };
        let t = Instant::now();
        let answer = op.call(ActionName::ListClusters.as_str(), args).await?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        token = answer["next_page_token"].as_str().map(str::to_string);
    }
    ms.sort_by(f64::total_cmp);
    Ok(ListLatency { paginated, ms })
}

/// `recent_events` filtered by cluster, `calls` times over the clusters.
pub(super) async fn recent_latency(
    op: &Operator,
    clusters: &[String],
    calls: usize,
) -> anyhow::Result<Vec<f64>> {
    let mut ms = Vec::with_capacity(calls);
    for i in 0..calls {
        // Spread over the fleet: old clusters and new ones.
        let cluster = &clusters[(i * 7919) % clusters.len()];
        let t = Instant::now();
        let answer = op
            .call(
                ActionName::RecentEvents.as_str(),
                json!({ "cluster": cluster, "limit": 20 }),
            )
            .await?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        if answer["events"].as_array().is_none_or(|e| e.is_empty()) {
            bail!("recent_events for cluster {cluster} answered no events");
        }
    }
    ms.sort_by(f64::total_cmp);
    Ok(ms)
}

/// The padding's append rate and when each service had folded it.
pub(super) struct Folds {
    /// Padding events appended per second.
    pub append_per_s: f64,
    events: u64,
    /// Seconds from the first padding append until the service applied
    /// the last.
    took: BTreeMap<String, f64>,
}

impl Folds {
    /// Padding events `name` folded per second (appends included: a
    /// service that keeps up folds at the append rate).
    pub(super) fn rate(&self, name: &str) -> Option<f64> {
        self.took
            .get(name)
            .map(|s| (self.events as f64 / s).round())
    }
}

/// Appends `n` `kubeconfig.retrieved` events about `clusters` straight to
/// JetStream (pipelined) while every service folds them; then waits until
/// each has applied the last.
pub(super) async fn pad_and_fold(
    js_log: &JetStreamLog,
    log: &SharedLog,
    account: &AccountId,
    clusters: &[String],
    n: u64,
    services: &[String],
) -> anyhow::Result<Folds> {
    let js = async_nats::jetstream::new(js_log.client().clone());
    let start = Instant::now();
    let mut acks = FuturesUnordered::new();
    for i in 0..n {
        let e = Envelope::new(
            account.clone(),
            Actor::service("bench"),
            KubeconfigRetrieved {
                cluster_id: clusters[i as usize % clusters.len()].clone(),
                fingerprint: format!("sha256:{i:064x}"),
            },
        );
        let subject = event_subject(&e.account_id, &e.aggregate, e.kind())?;
        if acks.len() >= WINDOW {
            acks.next().await.context("ack stream ended")??;
        }
        let ack = js.publish(subject, Bytes::from(e.encode()?)).await?;
        acks.push(std::future::IntoFuture::into_future(ack));
    }
    while let Some(ack) = acks.next().await {
        ack?;
    }
    let append_per_s = n as f64 / start.elapsed().as_secs_f64();
    let head = log.last_seq().await?;
    let mut took = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(1800);
    while took.len() < services.len() {
        let applied = checkpoint::applied();
        for s in services {
            if !took.contains_key(s) && applied.get(s).copied().unwrap_or(0) >= head {
                took.insert(s.clone(), start.elapsed().as_secs_f64());
            }
        }
        if Instant::now() > deadline {
            bail!("not every service folded the padding through seq {head}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(Folds {
        append_per_s,
        events: n,
        took,
    })
}

/// What each service's checkpoint holds, against its state's encoded size
/// (the whole snapshot), and the store's size on disk (`_store`).
pub(super) fn stored_sizes(
    path: &Path,
    services: &[String],
) -> anyhow::Result<BTreeMap<String, Value>> {
    let store = CheckpointStore::open(path)?;
    let mut out = BTreeMap::new();
    let (mut entry_total, mut encoded_total) = (0u64, 0u64);
    for name in services {
        let Some(cp) = store.load_entries(name)? else {
            out.insert(
                name.clone(),
                json!({ "error": "no incremental checkpoint" }),
            );
            continue;
        };
        let entries = cp.entries.len();
        let bytes = store.entry_bytes(name)?;
        let state = FleetState::restore_entries(cp.entries)?;
        let encoded = state.snapshot()?.len() as u64;
        entry_total += bytes;
        encoded_total += encoded;
        out.insert(
            name.clone(),
            json!({
                "seq": cp.seq,
                "entries": entries,
                "entry_bytes": bytes,
                "state_encoded_bytes": encoded,
                "entry_bytes_over_encoded": ratio(bytes, encoded),
            }),
        );
    }
    let disk = store.size_on_disk()?;
    out.insert(
        "_store".into(),
        json!({
            "entry_bytes": entry_total,
            "states_encoded_bytes": encoded_total,
            "entry_bytes_over_encoded": ratio(entry_total, encoded_total),
            "size_on_disk_bytes": disk,
            "disk_over_encoded": ratio(disk, encoded_total),
        }),
    );
    Ok(out)
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        return 0.0;
    }
    (a as f64 / b as f64 * 1000.0).round() / 1000.0
}
