//! `powernode bench replay`: rebuilding the fleet from an export file (no
//! network), as `powernode replay --file` does.
//!
//! Each replay runs in a process of its own (this binary, `--one MODE`), so
//! each has its own peak RSS and nothing carries over between runs (the
//! consumers' process-wide memo of verified signatures would otherwise let
//! a second verified run skip the checks):
//! * **sealed** (the headline): every record admitted exactly as a live
//!   consumer admits it; sealed ranges checked by their seal's digest (one
//!   signature per seal, the file's seals pinned to the generator's key),
//!   agent signatures past the last seal checked one by one;
//! * **every signature**: the same, ignoring the seals: every ed25519
//!   signature of an agent event verified;
//! * **trusted** (`--trust-signatures`): the same minus the ed25519 checks,
//!   refusals taken from the log's `system.log.record_rejected` events.
//!
//! Every run must end in the same state (same digest), or the bench fails.
//! The rate at which the file alone yields its records is measured too (in
//! a process of its own as well): the ceiling any replay of it has.
//!
//! `--generate N` first writes a synthetic export of N events: a fleet of
//! `--clusters` K3s clusters built through the whole lifecycle
//! ([`super::workload`], agent events signed), then VIP failover churn
//! (holder silent → promoted → the agents report holding and releasing,
//! signed) until N. Churn adds no objects, so two files with the same
//! `--clusters` and different N hold the same fleet: the peak RSS shows
//! whether memory follows the fleet or the number of events.

mod generate;
mod network;

use anyhow::{bail, ensure, Context};
use futures::StreamExt;
use powernode_archive::{Bound, Source, SourceArgs};
use powernode_inspect::replay::{fold, state_hash, Folded};
use powernode_inspect::sealed::fold_sealed;
use powernode_log::Filter;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Instant;

/// The target for a verified replay from a file.
const TARGET_PER_S: f64 = 1_000_000.0;
/// …and as a share of reading the file alone, in the same run.
const TARGET_RATIO: f64 = 0.3;

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
    /// Runs per mode; the fastest of each is reported (the machine is
    /// shared: a run another process slowed down says little).
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// Print one JSON object (otherwise pretty JSON).
    #[arg(long)]
    pub json: bool,
    /// Also replay over the network: load the export into a scratch stream
    /// on this NATS server (created and deleted by the bench) and compare
    /// the verified replay with a raw ordered-consumer read of it.
    #[arg(long, value_name = "URL")]
    pub nats: Option<String>,
    /// NATS credentials and TLS (with --nats).
    #[command(flatten)]
    pub nats_auth: powernode_log::nats::connect::NatsClientArgs,
    /// Internal: do one run of this mode in this process and print its
    /// figures (the bench starts itself once per run with it).
    #[arg(long, value_enum, hide = true)]
    pub one: Option<Mode>,
}

/// What one run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Read the records, nothing else.
    Read,
    /// Replay verified by the file's seals (signatures past the last seal
    /// checked one by one): the headline.
    Sealed,
    /// Replay, every signature verified.
    Verified,
    /// Replay with --trust-signatures.
    Trusted,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Sealed => "sealed",
            Self::Verified => "verified",
            Self::Trusted => "trusted",
        }
    }
}

/// Runs the benchmark and prints its figures.
pub async fn run(args: ReplayBenchArgs) -> anyhow::Result<()> {
    if let Some(mode) = args.one {
        let source_args = SourceArgs {
            file: Some(args.file.clone()),
            nats: None,
            nats_auth: Default::default(),
            stream: String::new(),
        };
        let source = Source::open(&source_args, std::path::Path::new(".")).await?;
        println!("{}", one(&source, mode).await?);
        return Ok(());
    }
    if let Some(n) = args.generate {
        generate(&args, n).await?;
        if args.generate_only {
            return Ok(());
        }
    }
    ensure!(
        args.file.is_file(),
        "{}: no such export (write one with --generate N)",
        args.file.display()
    );
    let load_before = load_average();
    eprintln!("bench: reading the file alone (the ceiling)…");
    let read = best_of(&args, Mode::Read).await?;
    eprintln!("bench: replaying, verified by the file's seals…");
    let v = best_of(&args, Mode::Sealed).await?;
    eprintln!("bench: replaying, every signature verified…");
    let e = best_of(&args, Mode::Verified).await?;
    eprintln!("bench: replaying with --trust-signatures…");
    let t = best_of(&args, Mode::Trusted).await?;
    for (other, name) in [(&e, "every-signature"), (&t, "trusted")] {
        ensure!(
            v["state_hash"] == other["state_hash"],
            "the {name} replay ended in another state ({} vs {}): not a faithful mode",
            other["state_hash"],
            v["state_hash"]
        );
    }
    let per_s = |r: &Value| r["events_per_s"].as_f64().unwrap_or(0.0);
    let read_per_s = per_s(&read);
    let ratio = |r: &Value| (per_s(r) / read_per_s * 1000.0).round() / 1000.0;
    let out = json!({
        "file": args.file.display().to_string(),
        "file_mib": round1(std::fs::metadata(&args.file)?.len() as f64 / 1_048_576.0),
        "events": v["events"],
        "applied": v["applied"],
        "refused": v["refused"],
        "seconds": v["seconds"],
        "events_per_s": v["events_per_s"],
        "ratio_to_read_alone": ratio(&v),
        "peak_rss_mib": v["peak_rss_mib"],
        "signatures": "verified by seals",
        "integrity": v["integrity"],
        "target_events_per_s": TARGET_PER_S,
        "target_ratio_to_read_alone": TARGET_RATIO,
        "meets_target": per_s(&v) >= TARGET_PER_S && ratio(&v) >= TARGET_RATIO,
        "runs_seconds": v["runs_seconds"],
        "profile_s": v["profile_s"],
        "fleet": v["fleet"],
        "state_hash": v["state_hash"],
        "every_signature": {
            "signatures": "every agent signature verified (the seals not used)",
            "seconds": e["seconds"],
            "events_per_s": e["events_per_s"],
            "ratio_to_read_alone": ratio(&e),
            "peak_rss_mib": e["peak_rss_mib"],
            "runs_seconds": e["runs_seconds"],
            "profile_s": e["profile_s"],
            "same_state": true,
        },
        "trusted": {
            "signatures": "trusted (--trust-signatures: not re-verified; refusals from record_rejected events)",
            "seconds": t["seconds"],
            "events_per_s": t["events_per_s"],
            "ratio_to_read_alone": ratio(&t),
            "peak_rss_mib": t["peak_rss_mib"],
            "runs_seconds": t["runs_seconds"],
            "profile_s": t["profile_s"],
            "same_state": true,
        },
        "read_only": {
            "events_per_s": read["events_per_s"],
            "peak_rss_mib": read["peak_rss_mib"],
        },
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "load_average_1m": { "before": load_before, "after": load_average() },
    });
    let mut out = out;
    if let Some(url) = &args.nats {
        let key = powernode_events::signing::verifying_key_from_hex(&generate::seal_public_key())?;
        let auth = args.nats_auth.client_auth()?;
        let network = network::measure(&args.file, url, &auth, key, args.runs).await?;
        ensure!(
            network["state_hash"] == v["state_hash"],
            "the network replay ended in another state ({} vs {})",
            network["state_hash"],
            v["state_hash"]
        );
        out["network"] = network;
    }
    super::print_figures(&out, args.json)
}

async fn generate(args: &ReplayBenchArgs, n: u64) -> anyhow::Result<()> {
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
        "bench: {} events ({} of them the fleet build-up, {} agent-signed, {} seals), {:.1} MiB",
        written.events,
        written.fleet_events,
        written.signed,
        written.seals,
        written.bytes as f64 / 1_048_576.0
    );
    Ok(())
}

/// Runs `mode` `--runs` times, each in a fresh process; the fastest run's
/// figures with every run's seconds, after checking all ended alike.
async fn best_of(args: &ReplayBenchArgs, mode: Mode) -> anyhow::Result<Value> {
    let exe = std::env::current_exe().context("cannot find this binary to run it again")?;
    let mut best: Option<Value> = None;
    let mut seconds = Vec::new();
    for _ in 0..args.runs.max(1) {
        let out = tokio::process::Command::new(&exe)
            .args(["bench", "replay", "--json", "--one", mode.name(), "--file"])
            .arg(&args.file)
            .stderr(std::process::Stdio::inherit())
            .output()
            .await?;
        if !out.status.success() {
            bail!("the {} run failed ({})", mode.name(), out.status);
        }
        let figures: Value = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("the {} run printed no figures", mode.name()))?;
        let s = figures["seconds"].as_f64().unwrap_or(f64::MAX);
        seconds.push(json!(s));
        if let Some(b) = &best {
            ensure!(
                b["state_hash"] == figures["state_hash"],
                "two {} replays of one file ended in different states",
                mode.name()
            );
        }
        if best
            .as_ref()
            .is_none_or(|b| s < b["seconds"].as_f64().unwrap_or(f64::MAX))
        {
            best = Some(figures);
        }
    }
    let mut best = best.context("at least one run")?;
    best["runs_seconds"] = Value::Array(seconds);
    Ok(best)
}

/// One run in this process: its figures as JSON.
async fn one(source: &Source, mode: Mode) -> anyhow::Result<Value> {
    let start = Instant::now();
    if mode == Mode::Read {
        let mut records = source.records(1, Bound::End, Filter::all()).await?;
        let mut n = 0u64;
        while let Some(r) = records.next().await {
            r?;
            n += 1;
        }
        let seconds = start.elapsed().as_secs_f64();
        return Ok(json!({
            "events": n,
            "seconds": round3(seconds),
            "events_per_s": (n as f64 / seconds).round(),
            "peak_rss_mib": round1(super::peak_rss_mib()),
        }));
    }
    let (folded, integrity) = match mode {
        Mode::Sealed => {
            let key =
                powernode_events::signing::verifying_key_from_hex(&generate::seal_public_key())?;
            let (folded, m) = fold_sealed(source, Bound::End, Some(key), false).await?;
            let line = m.describe(folded.stats.records);
            (folded, json!({ "mode": m, "line": line }))
        }
        Mode::Trusted => (
            fold(source, Bound::End, true, false).await?,
            json!("trusted"),
        ),
        Mode::Verified | Mode::Read => (
            fold(source, Bound::End, false, false).await?,
            json!("every signature"),
        ),
    };
    let seconds = start.elapsed().as_secs_f64();
    let peak_rss_mib = super::peak_rss_mib();
    let s = &folded.stats;
    Ok(json!({
        "events": s.records,
        "applied": s.applied,
        "refused": s.refused.len(),
        "seconds": round3(seconds),
        "events_per_s": (s.records as f64 / seconds).round(),
        "peak_rss_mib": round1(peak_rss_mib),
        "profile_s": {
            "total": round3(s.total.as_secs_f64()),
            "decode_cpu": round3(s.decode.as_secs_f64()),
            "verify_signatures": round3(s.verify.as_secs_f64()),
            "admit_and_apply": round3(s.apply.as_secs_f64()),
        },
        "integrity": integrity,
        "fleet": fleet_size(&folded),
        "state_hash": format!("sha256:{}", state_hash(&folded.state)),
    }))
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

/// The machine's 1-minute load average (Linux; `null` elsewhere): the
/// figures are only comparable on an otherwise idle machine.
fn load_average() -> Value {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(Value::Null, |l| json!(l))
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
