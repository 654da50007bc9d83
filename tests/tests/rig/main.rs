//! Fault tests against the live compose rig (`scripts/rig test`, which
//! brings a fresh rig up and sets `POWERNODE_RIG` to its `fleet.json`;
//! without it this test passes at once, so the workspace's test command
//! does not need Docker).
//!
//! Scenarios, in order (each after the runbook; `POWERNODE_RIG_SCENARIOS`
//! picks some):
//!
//! * `runbook` — two clusters of 2 servers + 1 worker formed through the
//!   API by agents in containers; meanwhile an agent's NKey tries to read
//!   another agent's token delivery and to publish as it (`security`);
//! * `failover` — `docker kill` the VIP holder's agent → silence → proposal
//!   → approval with the CLI → the VIP moves; the old agent started again
//!   releases the old generation;
//! * `nats` — one NATS node (the stream leader) killed in the middle of a
//!   burst of actions and a cluster's handshakes; it rejoins;
//! * `replicas` — a replica of `failover` and of `provisioner` killed
//!   mid-flow; the other carries on, the killed one resumes from its
//!   checkpoint, nothing is decided twice;
//! * `partition` — an agent cut off the network and reconnected;
//! * `dataplane` — an operator's access grant brought up on the test
//!   machine, the real `kubectl get nodes` through cluster A's VIP (its
//!   agents run WireGuard in their containers), the holder `docker kill`ed,
//!   the move approved, `kubectl` answered by the new holder; the client's
//!   downtime measured; the grant revoked;
//! * `scaleout` — the deciding services' two replicas split the accounts
//!   (16 partitions, leases in KV); the owners of the rig account's
//!   partition killed, their partitions taken over, work decided by the
//!   survivors, the killed ones back taking half; every decision once.
//!
//! After every scenario: nothing acknowledged is missing from the stream,
//! no event id is stored twice, and the API projection and every service's
//! cursor reach the stream's last sequence. The figures go to
//! `.rig/report.json`.

mod chaos;
mod dataplane;
mod failover;
mod nats_kill;
mod operator;
mod partition;
mod replicas;
mod runbook;
mod scaleout;
mod security;
mod support;

use serde_json::{json, Value};
use std::time::Instant;
use support::Rig;

/// The scenarios after the runbook, by name.
const SCENARIOS: [&str; 6] = [
    "failover",
    "nats",
    "replicas",
    "partition",
    "dataplane",
    "scaleout",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rig() -> anyhow::Result<()> {
    let Some(mut rig) = Rig::from_env().await? else {
        eprintln!("POWERNODE_RIG is not set: skipped (scripts/rig test runs this)");
        return Ok(());
    };
    let wanted: Vec<String> = std::env::var("POWERNODE_RIG_SCENARIOS")
        .map(|s| s.split(',').map(|s| s.trim().to_string()).collect())
        .unwrap_or_default();
    let run = |name: &str| wanted.is_empty() || wanted.iter().any(|w| w == name);
    let mut report = serde_json::Map::new();
    report.insert("timings".into(), rig.fleet["timings"].clone());

    let started = Instant::now();
    let clusters = runbook::run(&mut rig).await?;
    finish(
        &mut rig,
        &mut report,
        "runbook",
        clusters.report.clone(),
        started,
    )
    .await?;

    for name in SCENARIOS.into_iter().filter(|n| run(n)) {
        let started = Instant::now();
        println!("\n== rig scenario: {name}");
        let measured = match name {
            "failover" => failover::run(&mut rig, &clusters).await,
            "nats" => nats_kill::run(&mut rig, &clusters).await,
            "replicas" => replicas::run(&mut rig, &clusters).await,
            "partition" => partition::run(&mut rig, &clusters).await,
            "dataplane" => dataplane::run(&mut rig, &clusters).await,
            "scaleout" => scaleout::run(&mut rig, &clusters).await,
            other => unreachable!("unknown scenario {other}"),
        };
        let measured = match measured {
            Ok(m) => m,
            Err(e) => {
                report.insert(name.into(), json!({ "error": format!("{e:#}") }));
                write_report(&rig, &report);
                return Err(e.context(format!("rig scenario {name}")));
            }
        };
        finish(&mut rig, &mut report, name, measured, started).await?;
    }
    write_report(&rig, &report);
    println!(
        "\n== rig report ({}):\n{}",
        rig.report_path().display(),
        serde_json::to_string_pretty(&Value::Object(report))?
    );
    Ok(())
}

/// Checks that nothing acknowledged was lost and records the scenario.
async fn finish(
    rig: &mut Rig,
    report: &mut serde_json::Map<String, Value>,
    name: &str,
    mut measured: Value,
    started: Instant,
) -> anyhow::Result<()> {
    let check = rig.check_no_loss().await;
    let check = match check {
        Ok(c) => c,
        Err(e) => {
            report.insert(
                name.into(),
                json!({ "measured": measured, "error": format!("{e:#}") }),
            );
            write_report(rig, report);
            return Err(e.context(format!("after rig scenario {name}")));
        }
    };
    measured["events_lost"] = json!(check.lost);
    measured["no_loss_check"] = check.to_json();
    measured["scenario_s"] = json!((started.elapsed().as_secs_f64() * 10.0).round() / 10.0);
    println!(
        "== {name}: {}",
        serde_json::to_string(&measured).unwrap_or_default()
    );
    report.insert(name.into(), measured);
    write_report(rig, report);
    Ok(())
}

fn write_report(rig: &Rig, report: &serde_json::Map<String, Value>) {
    let text = serde_json::to_string_pretty(&Value::Object(report.clone())).unwrap_or_default();
    if let Err(e) = std::fs::write(rig.report_path(), text) {
        eprintln!("cannot write {}: {e}", rig.report_path().display());
    }
}
