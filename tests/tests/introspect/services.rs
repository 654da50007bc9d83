//! Service replicas: status, lag behind the log head, staleness.

use super::introspect;
use anyhow::{anyhow, ensure};
use powernode_server::services::failover::FailoverConfig;
use powernode_tests::failover_replica::ServeProcess;
use powernode_tests::lifecycle_support::{wait_until, Platform};
use serde_json::Value;
use std::time::Duration;

/// How long a killed replica takes to be `stale` (three 2 s report
/// intervals), with room for a busy machine.
const STALE_WAIT: Duration = Duration::from_secs(30);

/// The replica named `name` in an answer.
fn replica<'a>(answer: &'a Value, name: &str) -> Option<&'a Value> {
    answer["replicas"]
        .as_array()?
        .iter()
        .find(|r| r["replica"] == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_replica_goes_stale_and_shows_its_lag() -> anyhow::Result<()> {
    let p = Platform::start().await?;
    let serve = ServeProcess::spawn(
        &p.nats_url(),
        "sdwan",
        "lag",
        &p.scratch_path("sdwan-lag"),
        &FailoverConfig::default(),
    )?;

    // Both sdwan replicas report, under the seed's name for the service.
    let running = wait_until(STALE_WAIT, "sdwan and sdwan-lag running", || async {
        let a = introspect(&p, "sdwan_manager_agent")
            .await
            .map_err(|e| e.to_string())?;
        let ok = |name: &str| replica(&a, name).is_some_and(|r| r["status"] == "running");
        if ok("sdwan") && ok("sdwan-lag") {
            Ok(a)
        } else {
            Err(a.to_string())
        }
    })
    .await?;
    ensure!(running["kind"] == "service", "{running}");
    let lagger = replica(&running, "sdwan-lag").ok_or_else(|| anyhow!("{running}"))?;
    ensure!(lagger["service"] == "sdwan", "{lagger}");
    ensure!(
        lagger["host"].as_str().is_some_and(|h| h.contains("pid")),
        "{lagger}"
    );
    ensure!(lagger["uptime_secs"].as_f64().is_some(), "{lagger}");

    // The replica dies; the log goes on.
    drop(serve);
    const N: u64 = 5;
    for i in 0..N {
        p.template(&format!("after-stop-{i}")).await?;
    }

    let stale = wait_until(STALE_WAIT, "sdwan-lag stale with lag >= N", || async {
        let a = introspect(&p, "sdwan").await.map_err(|e| e.to_string())?;
        match replica(&a, "sdwan-lag") {
            Some(r) if r["status"] == "stale" && r["lag"].as_u64() >= Some(N) => Ok(a),
            _ => Err(a.to_string()),
        }
    })
    .await?;
    let r = replica(&stale, "sdwan-lag").ok_or_else(|| anyhow!("{stale}"))?;
    let (applied, head, lag) = (
        r["applied_seq"].as_u64().unwrap_or(0),
        r["log_head_seq"].as_u64().unwrap_or(0),
        r["lag"].as_u64().unwrap_or(0),
    );
    ensure!(head - applied == lag, "lag is head - applied: {r}");
    ensure!(head <= p.last_seq().await?, "{r}");
    // The replica of this process keeps up.
    let live = replica(&stale, "sdwan").ok_or_else(|| anyhow!("{stale}"))?;
    ensure!(live["status"] == "running", "{live}");
    ensure!(
        live["applied_seq"].as_u64() > Some(applied),
        "the live replica applied past the dead one: {stale}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_reports_and_unknown_ids_are_not_found() -> anyhow::Result<()> {
    let p = Platform::start().await?;
    for (id, replica_name) in [
        ("api", "api"),
        ("provisioner_agent", "provisioner"),
        ("sensor", "sensor"),
        ("failover", "failover"),
    ] {
        let a = wait_until(STALE_WAIT, &format!("{id} reports"), || async {
            let a = introspect(&p, id).await.map_err(|e| e.to_string())?;
            match replica(&a, replica_name) {
                Some(_) => Ok(a),
                None => Err(a.to_string()),
            }
        })
        .await?;
        ensure!(a["agent_id"] == id && a["kind"] == "service", "{a}");
    }
    let err = introspect(&p, "no-such-agent")
        .await
        .err()
        .ok_or_else(|| anyhow!("an unknown id was answered"))?;
    ensure!(err.code() == "not_found", "{err}");
    ensure!(err.to_string().contains("sdwan_manager_agent"), "{err}");
    Ok(())
}
