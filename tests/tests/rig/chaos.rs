//! The fault campaign (`scripts/rig chaos --seed S --faults N`): on a fresh
//! rig, after the runbook formed clusters A and B, a workload runs (see
//! [`workload`]) while N faults from a schedule derived only from the seed
//! land one after another (see [`schedule`]): SIGKILL of a service replica
//! or an agent, SIGKILL or `docker stop` of a NATS node, an agent or a
//! service cut off the network, a stream leader stepping down. Each fault
//! is healed after its time (started again, reconnected), and then the
//! invariants of [`invariants`] are checked. The campaign prints a table
//! per fault type and every violation, writes the JSON report to
//! `CHAOS_REPORT` (`.rig/chaos.json`), and fails on any violation.
//!
//! Without `CHAOS_SEED` the test passes at once (the workspace's test
//! command and `scripts/rig test` run it that way).

mod inject;
mod invariants;
mod report;
mod schedule;
mod workload;

use crate::runbook;
use crate::support::Rig;
use anyhow::{bail, Context as _};
use inject::World;
use invariants::FAILOVER_BOUND;
use report::{Campaign, Outcome, Violation};
use schedule::{schedule, Fault, Kind};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use workload::{Shared, Slot};

/// How long cluster C stays formed before the workload decommissions it.
const CLUSTER_C_HOLD: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs a running rig: `scripts/rig chaos --seed S --faults N` runs it"]
async fn campaign() -> anyhow::Result<()> {
    let seed: u64 = std::env::var("CHAOS_SEED")
        .context("CHAOS_SEED is not set (run `scripts/rig chaos`)")?
        .parse()
        .context("CHAOS_SEED must be a whole number")?;
    let faults: usize = std::env::var("CHAOS_FAULTS")
        .unwrap_or_else(|_| "10".into())
        .parse()
        .context("CHAOS_FAULTS must be a whole number")?;
    let Some(mut rig) = Rig::from_env().await? else {
        bail!("CHAOS_SEED is set but POWERNODE_RIG is not (run `scripts/rig chaos`)");
    };
    let world = World::of(&rig)?;
    let plan = schedule(seed, faults, &world.targets());
    println!("\n== chaos: seed {seed}, {faults} faults; the schedule:");
    for f in &plan {
        println!("  {f}");
    }
    let started = Instant::now();
    let clusters = runbook::run(&mut rig).await?;
    let base = vec![clusters.a.clone(), clusters.b.clone()];
    let (server, worker) = (Slot::of(&rig, "c-server-1"), Slot::of(&rig, "c-worker-1"));
    let rig = Arc::new(rig);
    let shared = Arc::new(Shared::default());
    let mut campaign = Campaign::default();

    // The rig as the runbook left it must already hold.
    let (_, checks) = check(&rig, &world, &shared, &base, 0, "baseline", &mut campaign).await;
    println!("== chaos: baseline {checks:?}");

    let tasks = vec![
        tokio::spawn(workload::steady(rig.op.clone(), shared.clone())),
        tokio::spawn(workload::approver(
            rig.clone(),
            world.clone(),
            shared.clone(),
        )),
        tokio::spawn(workload::lifecycle(
            rig.op.clone(),
            shared.clone(),
            server,
            worker,
            CLUSTER_C_HOLD,
        )),
    ];
    for fault in &plan {
        let outcome = run_fault(&rig, &world, &shared, &base, fault, &mut campaign).await;
        println!(
            "== chaos #{} {} {}: {} recovery {:?} ms, failover {:?} ms, failed {:?}",
            fault.n,
            fault.kind.name(),
            fault.target,
            outcome.detail,
            outcome.recovery_ms,
            outcome.failover_ms,
            outcome
                .checks
                .iter()
                .filter(|c| !c.1)
                .map(|c| c.0)
                .collect::<Vec<_>>()
        );
        campaign.outcomes.push(outcome);
    }
    shared.stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await?;
    }
    let (_, checks) = check(&rig, &world, &shared, &base, 0, "final", &mut campaign).await;
    println!("== chaos: final {checks:?}");

    campaign.print();
    let events = rig.events().await?;
    let extra = json!({
        "campaign_s": started.elapsed().as_secs(),
        "last_seq": rig.last_seq().await?,
        "acknowledged": rig.ledger.len() + shared.ledger.lock().expect("ledger").len(),
        "workload": *shared.counts.lock().expect("counts"),
        "workload_errors": *shared.errors.lock().expect("errors"),
        "cluster_c": *shared.lifecycle.lock().expect("lifecycle"),
        "events": invariants::counts(&events, &[
            "system.sdwan.failover.proposed",
            "system.approval.granted",
            "system.sdwan.virtual_ip.promoted",
            "sdwan.vip_holder_silent",
            "sdwan.vip_holder_recovered",
            "system.k3s.cluster.decommissioned",
        ]),
        "failover_bound_ms": FAILOVER_BOUND.as_millis() as u64,
    });
    println!(
        "\n== chaos: run {}",
        serde_json::to_string_pretty(&extra).unwrap_or_default()
    );
    let report = campaign.to_json(seed, extra);
    let path = std::env::var_os("CHAOS_REPORT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| rig.rig_dir.join("chaos.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("{}", path.display()))?;
    if !campaign.violations.is_empty() {
        bail!(
            "{} invariant violation(s) in {} faults (seed {seed}); see above and {}",
            campaign.violations.len(),
            campaign.outcomes.len(),
            path.display()
        );
    }
    Ok(())
}

/// Injects one fault, watches the VIPs while it lasts, heals it, and
/// checks the invariants.
async fn run_fault(
    rig: &Rig,
    world: &World,
    shared: &Shared,
    base: &[String],
    fault: &Fault,
    campaign: &mut Campaign,
) -> Outcome {
    tokio::time::sleep(fault.lead).await;
    let during = format!("{} {}", fault.kind.name(), fault.target);
    let violation = |campaign: &mut Campaign, invariant: &'static str, detail: String| {
        println!("!! chaos #{} ({during}): {invariant}: {detail}", fault.n);
        campaign.violations.push(Violation {
            fault: fault.n,
            during: during.clone(),
            invariant,
            detail,
        });
    };
    let clusters = clusters(shared, base);
    // The VIPs whose holder this fault takes down.
    let mut held = Vec::new();
    if matches!(fault.kind, Kind::KillAgent | Kind::PartitionAgent) {
        for c in &clusters {
            if let Ok(v) = rig.vip(c).await {
                let holder = v["holders"][0].as_str().unwrap_or_default();
                if rig.agent_of(holder).is_ok_and(|a| a.slot == fault.target) {
                    held.push(c.clone());
                }
            }
        }
    }
    let injected = match inject::inject(rig, world, fault).await {
        Ok(i) => i,
        Err(e) => {
            violation(campaign, "injected", format!("{e:#}"));
            return Outcome {
                fault: fault.clone(),
                detail: format!("not injected: {e:#}"),
                recovery_ms: None,
                failover_ms: None,
                checks: vec![("injected", false)],
            };
        }
    };
    let mut checks = Vec::new();
    let mut failover_ms = None;
    if !held.is_empty() && fault.down > FAILOVER_BOUND {
        // A candidate is live: a live holder within the bound, while the
        // old one is still down.
        match invariants::live_holders(rig, world, &held, FAILOVER_BOUND).await {
            Ok(d) => failover_ms = Some(d.as_millis() as u64),
            Err(e) => violation(campaign, "live_holder_in_bound", format!("while down: {e}")),
        }
        checks.push(("live_holder_in_bound", failover_ms.is_some()));
    }
    tokio::time::sleep(fault.down.saturating_sub(injected.at.elapsed())).await;
    if let Err(e) = inject::heal(rig, world, fault, &injected) {
        violation(campaign, "recovered", format!("heal failed: {e:#}"));
    }
    let (recovery_ms, more) = check(rig, world, shared, base, fault.n, &during, campaign).await;
    checks.extend(more);
    Outcome {
        fault: fault.clone(),
        detail: injected.detail,
        recovery_ms,
        failover_ms,
        checks,
    }
}

/// Clusters A and B, and C while the workload has it.
fn clusters(shared: &Shared, base: &[String]) -> Vec<String> {
    let mut all = base.to_vec();
    all.extend(shared.cluster_c.lock().expect("cluster c").clone());
    all
}

/// Waits for the rig to converge and checks every invariant; records the
/// violations. Answers the recovery time and each check's result.
async fn check(
    rig: &Rig,
    world: &World,
    shared: &Shared,
    base: &[String],
    n: usize,
    during: &str,
    campaign: &mut Campaign,
) -> (Option<u64>, Vec<(&'static str, bool)>) {
    let mut checks = Vec::new();
    let mut record = |campaign: &mut Campaign, name: &'static str, r: Result<String, String>| {
        if let Err(detail) = &r {
            println!("!! chaos #{n} ({during}): {name}: {detail}");
            campaign.violations.push(Violation {
                fault: n,
                during: during.to_string(),
                invariant: name,
                detail: detail.clone(),
            });
        }
        checks.push((name, r.is_ok()));
    };
    let recovered = invariants::converge(rig, world).await;
    let recovery_ms = recovered.as_ref().ok().map(|d| d.as_millis() as u64);
    record(campaign, "recovered", recovered.map(|d| format!("{d:?}")));
    // The ledger before the events: all of it must be in what is read after.
    let mut ledger = rig.ledger.clone();
    ledger.extend(shared.ledger.lock().expect("ledger").iter().cloned());
    let events = rig.events().await.map_err(|e| format!("{e:#}"));
    let acked = events
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|ev| invariants::acked_in_log(&ledger, ev));
    record(campaign, "acked_in_log", acked);
    let digest = rig.check_state_hash().await.map_err(|e| format!("{e:#}"));
    record(campaign, "digest_equals_replay", digest);
    let clusters = clusters(shared, base);
    let holders = match (&events, invariants::vips(rig, &clusters).await) {
        (Ok(ev), Ok(vips)) => invariants::one_holder_per_generation(rig, ev, &vips),
        (Err(e), _) => Err(e.clone()),
        (_, Err(e)) => Err(e),
    };
    record(campaign, "one_holder_per_generation", holders);
    let live = invariants::live_holders(rig, world, &clusters, FAILOVER_BOUND)
        .await
        .map(|d| format!("{d:?}"));
    record(campaign, "live_holder_in_bound", live);
    (recovery_ms, checks)
}
