//! The measured phases, in order: the operator's grant and first answer,
//! the raw ceilings, R forced promotions, an unplanned failover, the
//! killed holder's return, a drain; then each agent's peak RSS.

use super::fleet::{str_at, wait_until, Fleet, Member};
use super::measure::{self, percentile, r2, sorted};
use super::netlab::probe::{probe_once, ApiTarget, ProbeLoop};
use super::netlab::wireguard::{with_private_key, KeyPair, WgQuick};
use super::netlab::Host;
use super::{Cluster, DataplaneArgs};
use anyhow::{ensure, Context as _};
use chrono::{DateTime, Utc};
use powernode_events::{Envelope, EventPayload};
use powernode_log::SharedLog;
use serde_json::json;
use std::time::{Duration, Instant};

/// How long one probe may take outside the unplanned outage.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// The unplanned outage's probe interval.
const OUTAGE_EVERY: Duration = Duration::from_millis(10);
/// The drain's probe interval.
const DRAIN_EVERY: Duration = Duration::from_millis(50);

/// Everything measured.
#[derive(Debug, Default)]
pub(super) struct Figures {
    /// Per promotion: stored → the last peer applied (ms), sorted.
    pub propagation_ms: Vec<f64>,
    /// Per peer and promotion: stored → that peer applied (ms), sorted.
    pub peer_apply_ms: Vec<f64>,
    /// Bare `wg set … allowed-ips` in a namespace (ms), sorted.
    pub wg_set_ms: Vec<f64>,
    /// The probe's round trip through the VIP before any failure (ms), sorted.
    pub probe_rtt_ms: Vec<f64>,
    /// Kill → first answer from the new holder (ms).
    pub unplanned_raw_ms: f64,
    /// Requests that failed during the unplanned outage, and all sent.
    pub unplanned_failed: usize,
    /// Requests sent during the unplanned outage's loop.
    pub unplanned_requests: usize,
    /// Drain: failed requests, all requests, requests sent again after a reset.
    pub drain_failed: usize,
    /// Drain: requests sent.
    pub drain_requests: usize,
    /// Drain: requests sent again after a connection reset (as client-go does).
    pub drain_retried: usize,
    /// Drain sent → the VIP reachable through the new holder (ms).
    pub drain_moved_ms: f64,
    /// Why the drain did not complete (the VIP never reachable through the
    /// restarted server), when it did not.
    pub drain_error: Option<String>,
    /// Each running agent's peak RSS (MiB).
    pub rss_mib: Vec<f64>,
}

/// Runs every phase against the cluster.
pub(super) async fn measure(
    fleet: &Fleet,
    mut c: Cluster,
    log: &SharedLog,
    args: &DataplaneArgs,
) -> anyhow::Result<Figures> {
    let progress = |msg: &str| eprintln!("bench: {msg}");
    let mut f = Figures::default();
    let (s1, s2) = (&c.servers[0], &c.servers[1]);
    let v = fleet
        .wait_vip(&c.id, "the VIP held by srv-1, srv-2 its candidate", |v| {
            v["holder_peer_id"] == s1.peer.as_str()
                && v["failover_holder_peer_ids"] == json!([s2.peer])
        })
        .await?;
    let (vip_id, vip) = (str_at(&v, "/id")?, str_at(&v, "/vip")?);
    fleet.wait_in_sync(&c.all()).await?;

    // The operator: its own key, a grant through a worker, the real wg-quick.
    let laptop = fleet.underlay.host("operator")?;
    let key = KeyPair::generate()?;
    let g = fleet
        .op
        .call(
            "system_sdwan_create_access_grant",
            json!({ "network_id": fleet.net, "name": "bench-laptop", "public_key": key.public, "ttl_secs": 3600 }),
        )
        .await?;
    let gateway = str_at(&g, "/grant/gateway_peer_id")?;
    ensure!(
        c.workers.iter().any(|w| w.peer == gateway),
        "the grant's gateway {gateway} is not a worker: {g}"
    );
    let config = with_private_key(&str_at(&g, "/wireguard_config")?, &key.private);
    let _quick = WgQuick::up(&laptop, "laptop", &config, &fleet.dir)?;
    fleet.wait_in_sync(&c.all()).await?;
    let target = ApiTarget::from_kubeconfig(&fleet.kubeconfig(&c.id).await?)?;
    wait_answer(&laptop, &target, s1).await?;

    progress(&format!(
        "ceilings: {} bare `wg set`, 2 s of probes through the VIP…",
        args.rounds
    ));
    f.wg_set_ms = sorted(measure::wg_set_ceiling(
        &laptop,
        &fleet.dir,
        args.rounds + 1,
    )?);
    let rtt = ProbeLoop::start(&laptop, &target, OUTAGE_EVERY, PROBE_TIMEOUT)?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    f.probe_rtt_ms = sorted(measure::round_trips(&rtt.stop()?));

    progress(&format!("{} forced promotions…", args.rounds));
    let mut holder = 0usize;
    for round in 0..args.rounds {
        let to = 1 - holder;
        let (per_peer, total) = promotion(fleet, &c, log, &vip_id, &vip, to)
            .await
            .with_context(|| format!("promotion {}", round + 1))?;
        f.peer_apply_ms.extend(per_peer);
        f.propagation_ms.push(total);
        holder = to;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    f.propagation_ms = sorted(std::mem::take(&mut f.propagation_ms));
    f.peer_apply_ms = sorted(std::mem::take(&mut f.peer_apply_ms));

    progress("unplanned failover: the holder's agent and boringtun SIGKILLed…");
    let other = 1 - holder;
    let outage = ProbeLoop::start(
        &laptop,
        &target,
        OUTAGE_EVERY,
        Duration::from_millis(args.outage_probe_timeout_ms.max(10)),
    )?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed = Instant::now();
    c.servers[holder].agent.kill();
    let n = measure::kill_boringtun(&c.servers[holder].host)?;
    ensure!(n > 0, "no boringtun-cli ran in the holder's namespace");
    let new_holder = c.servers[other].instance_id.clone();
    let waited = tokio::task::block_in_place(|| {
        measure::wait_loop_answer(&outage, &new_holder, super::fleet::WAIT)
    });
    let results = outage.stop()?;
    if let Err(e) = waited {
        let v = fleet.vip(&c.id).await.unwrap_or_default();
        return Err(e.context(format!(
            "after the kill of {}: VIP {v}\n{}'s agent log:\n{}",
            c.servers[holder].hostname,
            c.servers[other].hostname,
            c.servers[other].agent.log_tail(15)
        )));
    }
    f.unplanned_raw_ms = measure::first_answer_from(&results, killed, &new_holder)
        .context("no answer from the new holder after the kill")?
        .as_secs_f64()
        * 1000.0;
    let after: Vec<_> = results.iter().filter(|r| r.at >= killed).collect();
    f.unplanned_requests = after.len();
    f.unplanned_failed = after.iter().filter(|r| r.outcome.is_err()).count();

    progress("the killed holder's agent restarted; drain of the holder…");
    let (down, up) = (holder, other);
    fleet.restart(&mut c.servers[down])?;
    let back = c.servers[down].peer.clone();
    fleet
        .wait_vip(
            &c.id,
            "the restarted server a failover candidate again",
            |v| {
                v["failover_holder_peer_ids"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|p| p == back.as_str()))
            },
        )
        .await?;
    fleet.wait_in_sync(&c.all()).await?;
    let probes = ProbeLoop::start(&laptop, &target, DRAIN_EVERY, PROBE_TIMEOUT)?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let drained = Instant::now();
    let from = &c.servers[up];
    let gen = fleet.vip(&c.id).await?["generation"]
        .as_u64()
        .context("VIP generation")?;
    fleet
        .op
        .call("system_drain_instance", json!({ "id": from.instance_id }))
        .await?;
    let to = c.servers[down].peer.clone();
    let moved = fleet
        .wait_vip(&c.id, "the drained holder's VIP moved and reachable", |v| {
            v["holder_peer_id"] == to.as_str()
                && v["generation"].as_u64() > Some(gen)
                && v["reachable"]["holder_peer_id"] == to.as_str()
        })
        .await;
    f.drain_moved_ms = drained.elapsed().as_secs_f64() * 1000.0;
    let new_holder = c.servers[down].instance_id.clone();
    let waited = match moved {
        Ok(_) => tokio::task::block_in_place(|| {
            measure::wait_loop_answer(&probes, &new_holder, super::fleet::WAIT)
        }),
        Err(e) => Err(e),
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let results = probes.stop()?;
    if let Err(e) = waited {
        // Reported, not fatal: the other figures stand.
        let m = &c.servers[down];
        eprintln!(
            "bench: the drain did not complete: {e:#}\n{} (restarted) agent log:\n{}",
            m.hostname,
            m.agent.log_tail(25)
        );
        f.drain_error = Some(format!("{e}"));
    }
    f.drain_requests = results.len();
    f.drain_failed = results.iter().filter(|r| r.outcome.is_err()).count();
    f.drain_retried = results.iter().filter(|r| r.retried.is_some()).count();

    f.rss_mib = c
        .all()
        .iter()
        .filter_map(|m| m.agent.pid().and_then(measure::peak_rss_mib))
        .collect();
    Ok(f)
}

/// Forces the VIP onto server `to`; `(per peer: stored → applied ms,
/// stored → the last peer applied ms)`.
async fn promotion(
    fleet: &Fleet,
    c: &Cluster,
    log: &SharedLog,
    vip_id: &str,
    vip: &str,
    to: usize,
) -> anyhow::Result<(Vec<f64>, f64)> {
    let members = c.all();
    fleet.wait_in_sync(&members).await?;
    let before = fleet.peer_config(&members[0].peer).await?["applied_revision"]
        .as_u64()
        .context("no applied revision")?;
    let target = &c.servers[to];
    let first_seq = log.last_seq().await? + 1;
    let sent = Utc::now();
    let answer = fleet
        .op
        .call(
            "system_sdwan_failover_virtual_ip",
            json!({ "virtual_ip_id": vip_id, "to_peer_id": target.peer }),
        )
        .await?;
    let generation = answer["virtual_ip"]["generation"]
        .as_u64()
        .with_context(|| format!("no generation in {answer}"))?;
    fleet.wait_in_sync(&members).await?;
    let stored = promoted_at(log, first_seq, vip_id, generation).await?;
    let key = str_at(
        &fleet.peer_config(&target.peer).await?,
        "/wireguard/public_key",
    )?;
    let prefix = format!("{vip}/128");
    let mut per_peer = Vec::new();
    for m in members.iter().filter(|m| m.peer != target.peer) {
        ensure!(
            measure::routes_to(&m.host, &fleet.interface, &key, &prefix)?,
            "{}'s WireGuard does not route {prefix} to the new holder {}",
            m.hostname,
            target.hostname
        );
        let at = measure::first_apply_after(m, before, sent.timestamp_millis())
            .with_context(|| format!("{} logged no apply above revision {before}", m.hostname))?;
        per_peer.push((at - stored.timestamp_millis()) as f64);
    }
    let total = per_peer.iter().copied().fold(0.0, f64::max);
    Ok((per_peer, total))
}

/// When the promotion of `vip_id` to `generation` was stored.
async fn promoted_at(
    log: &SharedLog,
    first_seq: u64,
    vip_id: &str,
    generation: u64,
) -> anyhow::Result<DateTime<Utc>> {
    let last = log.last_seq().await?;
    for r in crate::read_range(log, first_seq, last).await? {
        let Ok(e) = Envelope::decode(&r.bytes) else {
            continue;
        };
        if let EventPayload::VirtualIpPromoted(p) = &e.payload {
            if p.virtual_ip_id == vip_id && p.generation == generation {
                return Ok(r.stored_at);
            }
        }
    }
    anyhow::bail!("no promotion of {vip_id} to generation {generation} in the log")
}

/// Waits until `GET /version` through the VIP from `host` is answered by `m`.
async fn wait_answer(host: &Host, target: &ApiTarget, m: &Member) -> anyhow::Result<()> {
    wait_until(
        &format!("an answer through the VIP from {}", m.hostname),
        || async {
            let r = tokio::task::block_in_place(|| probe_once(host, target, PROBE_TIMEOUT))
                .map_err(|e| format!("{e:#}"))?;
            match r.outcome {
                Ok(a) if a.instance == m.instance_id => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await
}

/// The figures' summary numbers, for the report.
pub(super) fn p(v: &[f64], q: f64) -> f64 {
    r2(percentile(v, q))
}
