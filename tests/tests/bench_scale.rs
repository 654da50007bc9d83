//! `powernode bench scale` at a small size, for its shape (not its speed):
//! the fleet comes up through the handshake, every service folds it and
//! the padding, checkpoints are incremental and restore to the fleet, and
//! every figure the bench promises is there.

use anyhow::ensure;
use powernode_bench::scale::{measure, ScaleArgs};
use powernode_tests::nats::NatsServer;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_scale_run_reports_every_figure() -> anyhow::Result<()> {
    let server = NatsServer::start()?;
    let mut argv = server.nats_args();
    argv.extend(
        [
            "--clusters",
            "6",
            "--workers",
            "2",
            "--concurrency",
            "3",
            "--pad-to",
            "3000",
            "--list-calls",
            "10",
            "--page-size",
            "4",
            "--recent-calls",
            "10",
        ]
        .map(String::from),
    );
    let args = ScaleArgs::parse_from(argv)?;
    let out = measure(&args).await?;
    eprintln!("{out:#}");

    let num = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    ensure!(out["nodes"] == 18, "{out}");
    ensure!(num(&out, "fleet_events") > 100.0, "{out}");
    ensure!(out["pad_events"].as_u64() == Some(3000 - out["fleet_events"].as_u64().unwrap_or(0)));
    for k in [
        "rss_per_node_per_service_bytes",
        "list_clusters_p99_ms",
        "recent_events_cluster_p99_ms",
        "build_seconds",
    ] {
        ensure!(num(&out, k) >= 0.0, "{k} missing: {out}");
    }
    let services = out["per_service"].as_object().expect("per_service");
    ensure!(services.len() == 6, "{out}");
    for (name, s) in services {
        ensure!(num(s, "fold_events_per_s") > 0.0, "{name}: {s}");
        let run = &s["checkpoints_whole_run"];
        ensure!(num(run, "saved") >= 1.0, "{name} never checkpointed: {s}");
        // One full checkpoint at most (the first, from an empty store).
        ensure!(num(run, "full") <= 1.0, "{name}: {s}");
        ensure!(num(run, "bytes_written") > 0.0, "{name}: {s}");
        let stored = &s["stored"];
        // At or past the padding's end (deciding services may append more).
        ensure!(
            num(stored, "seq") >= num(&out, "fleet_events") + num(&out, "pad_events"),
            "{name}'s checkpoint is short of the padding's end: {s} {out}"
        );
        ensure!(num(stored, "entry_bytes") > 0.0, "{name}: {s}");
        ensure!(num(stored, "state_encoded_bytes") > 0.0, "{name}: {s}");
    }
    ensure!(
        num(&out["checkpoint_store"], "size_on_disk_bytes") > 0.0,
        "{out}"
    );
    Ok(())
}
