//! `powernode bench replay`: rebuilding the fleet from an export file (no
//! network), as `powernode replay --file` does.
//!
//! Two runs over the same file, each with its own peak RSS:
//! * **verified** (the headline): every record admitted exactly as a live
//!   consumer admits it, ed25519 signatures of agent events included;
//! * **trusted** (`--trust-signatures`): the same minus the ed25519 checks,
//!   refusals taken from the log's `system.log.record_rejected` events.
//!
//! Both must end in the same state (same digest), or the bench fails. The
//! rate at which the file alone yields its records is measured too: the
//! ceiling any replay of it has.
//!
//! `--generate N` first writes a synthetic export of N events: a fleet of
//! `--clusters` K3s clusters built through the whole lifecycle
//! ([`super::workload`], agent events signed), then VIP failover churn
//! (holder silent → promoted → the agents report holding and releasing,
//! signed) until N. Churn adds no objects, so two files with the same
//! `--clusters` and different N hold the same fleet: the peak RSS shows
//! whether memory follows the fleet or the number of events.

mod generate;

use crate::inspect::replay::{fold, state_hash, Folded};
use crate::inspect::{Bound, Source, SourceArgs};
use crate::log::Filter;
use crate::runtime::replay::ReplayStats;
use anyhow::{bail, ensure, Context};
use futures::StreamExt;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `powernode bench replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayBenchArgs {
    /// The export to replay (written first with --generate).
    #[arg(long, value_name = "FILE")]
    pub file: PathBuf,
    /// Write a synthetic export of N events to --file first (replacing it).
    #[arg(long, value_name = "N")]
    pub generate: Option<u64>,
    /// With --generate: clusters in the fleet (3 servers and 2 workers
    /// each, one VIP each); the events past its build-up are failover churn.
    #[arg(long, default_value_t = 2000)]
    pub clusters: usize,
    /// With --generate: accounts the clusters are spread over.
    #[arg(long, default_value_t = 16)]
    pub accounts: usize,
    /// Only generate the file (no replay).
    #[arg(long, requires = "generate")]
    pub generate_only: bool,
    /// Replays per mode; the fastest of each is reported (the machine is
    /// shared: a run that another process slowed down says little).
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// Print one JSON object (otherwise pretty JSON).
    #[arg(long)]
    pub json: bool,
}

/// Runs the benchmark and prints its figures.
pub async fn run(args: ReplayBenchArgs) -> anyhow::Result<()> {
    if let Some(n) = args.generate {
        ensure!(n > 0, "--generate needs at least one event");
        eprintln!(
            "bench: writing {n} events ({} clusters in {} accounts, then failover churn) to {}…",
            args.clusters,
            args.accounts,
            args.file.display()
        );
        let (file, clusters, accounts) = (args.file.clone(), args.clusters, args.accounts);
        let written =
            tokio::task::spawn_blocking(move || generate::write(&file, n, clusters, accounts))
                .await??;
        eprintln!(
            "bench: {} events ({} of them the fleet build-up, {} agent-signed), {:.1} MiB",
            written.events,
            written.fleet_events,
            written.signed,
            written.bytes as f64 / 1_048_576.0
        );
        if args.generate_only {
            return Ok(());
        }
    }
    let source_args = SourceArgs {
        file: Some(args.file.clone()),
        nats: None,
        stream: String::new(),
    };
    let source = Source::open(&source_args, std::path::Path::new(".")).await?;
    let file_mib = std::fs::metadata(&args.file)?.len() as f64 / 1_048_576.0;

    eprintln!("bench: reading the file alone (the ceiling)…");
    let read_per_s = read_rate(&source).await?;
    let load_before = load_average();
    eprintln!("bench: replaying, every signature verified…");
    let verified = best_of(&source, false, args.runs).await?;
    eprintln!("bench: replaying again with --trust-signatures…");
    let trusted = best_of(&source, true, args.runs).await?;
    if verified.hash != trusted.hash {
        bail!(
            "the trusted replay ended in another state ({} vs {}): not a faithful mode",
            trusted.hash,
            verified.hash
        );
    }
    let v = &verified;
    let per_s = |r: &Run| (r.stats.records as f64 / r.seconds).round();
    let out = json!({
        "file": args.file.display().to_string(),
        "file_mib": round1(file_mib),
        "events": v.stats.records,
        "applied": v.stats.applied,
        "refused": v.stats.refused.len(),
        "seconds": round3(v.seconds),
        "runs_seconds": v.all_seconds.iter().map(|s| round3(*s)).collect::<Vec<_>>(),
        "events_per_s": per_s(v),
        "target_events_per_s": TARGET_PER_S,
        "meets_target": per_s(v) >= TARGET_PER_S,
        "peak_rss_mib": round1(v.peak_rss_mib),
        "signatures": "verified",
        "profile_s": profile(v),
        "fleet": v.fleet,
        "state_hash": format!("sha256:{}", v.hash),
        "trusted": {
            "signatures": "trusted (--trust-signatures: not re-verified; refusals from record_rejected events)",
            "seconds": round3(trusted.seconds),
            "runs_seconds": trusted.all_seconds.iter().map(|s| round3(*s)).collect::<Vec<_>>(),
            "events_per_s": per_s(&trusted),
            "meets_target": per_s(&trusted) >= TARGET_PER_S,
            "peak_rss_mib": round1(trusted.peak_rss_mib),
            "profile_s": profile(&trusted),
            "same_state": true,
        },
        "read_only_per_s": read_per_s.round(),
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "load_average_1m": { "before": load_before, "after": load_average() },
    });
    super::print_figures(&out, args.json)
}

/// The fastest of a mode's runs.
struct Run {
    stats: ReplayStats,
    hash: String,
    fleet: Value,
    seconds: f64,
    all_seconds: Vec<f64>,
    peak_rss_mib: f64,
}

/// Replays `runs` times; the fastest run, with the peak RSS of all of them.
async fn best_of(source: &Source, trust: bool, runs: usize) -> anyhow::Result<Run> {
    reset_peak_rss();
    let mut best: Option<Run> = None;
    let mut all_seconds = Vec::new();
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        let folded = fold(source, Bound::End, trust, true).await?;
        let seconds = start.elapsed().as_secs_f64();
        all_seconds.push(seconds);
        let hash = state_hash(&folded.state);
        if let Some(b) = &best {
            ensure!(
                b.hash == hash,
                "two replays of one file ended in different states"
            );
        }
        if best.as_ref().is_none_or(|b| seconds < b.seconds) {
            best = Some(Run {
                hash,
                fleet: fleet_size(&folded),
                stats: folded.stats,
                seconds,
                all_seconds: Vec::new(),
                peak_rss_mib: 0.0,
            });
        }
    }
    let mut run = best.context("at least one run")?;
    run.all_seconds = all_seconds;
    run.peak_rss_mib = super::peak_rss_mib();
    Ok(run)
}

/// Records per second the source yields with nothing done to them.
async fn read_rate(source: &Source) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut records = source.records(1, Bound::End, Filter::all()).await?;
    let mut n = 0u64;
    while let Some(r) = records.next().await {
        r?;
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

fn profile(r: &Run) -> Value {
    let s = &r.stats;
    json!({
        "total": round3(s.total.as_secs_f64()),
        "decode_cpu": round3(s.decode.as_secs_f64()),
        "verify_signatures": round3(s.verify.as_secs_f64()),
        "admit_and_apply": round3(s.apply.as_secs_f64()),
    })
}

/// Objects in the rebuilt fleet.
fn fleet_size(f: &Folded) -> Value {
    let (mut clusters, mut instances, mut vips, mut approvals) = (0, 0, 0, 0);
    let mut accounts = 0;
    for (_, a) in f.state.accounts() {
        accounts += 1;
        clusters += a.clusters.len();
        instances += a.instances.len();
        vips += a.virtual_ips.len();
        approvals += a.approvals.len();
    }
    json!({
        "accounts": accounts,
        "clusters": clusters,
        "instances": instances,
        "virtual_ips": vips,
        "approvals": approvals,
    })
}

/// The target for a replay from a file.
const TARGET_PER_S: f64 = 500_000.0;

/// The machine's 1-minute load average (Linux; `null` elsewhere): the
/// figures are only comparable on an otherwise idle machine.
fn load_average() -> Value {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(Value::Null, |l| json!(l))
}

/// Resets this process's peak RSS (Linux: `5` to `/proc/self/clear_refs`),
/// so each run reports its own; elsewhere a no-op.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
