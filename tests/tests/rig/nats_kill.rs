//! One NATS node killed in the middle of a burst: operator actions from
//! several clients at once, and cluster C's handshakes (its bootstrap
//! server is assigned right after the kill, while the stream elects a new
//! leader). Every action must succeed or answer a clear retryable error
//! (503 `unavailable`); everything acknowledged must be in the stream and
//! applied by every projection; the node is started again and must rejoin
//! (every replica of the event stream current).

use crate::runbook::{wait_active, Clusters};
use crate::support::{ms, retryable, Acked, Rig, STEP};
use anyhow::{ensure, Context as _};
use powernode_tests::lifecycle_support::wait_until;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Clients sending actions at once.
const CLIENTS: usize = 4;
/// How long the burst lasts.
const BURST: Duration = Duration::from_secs(24);
/// When the node is killed, after the burst starts.
const KILL_AT: Duration = Duration::from_secs(3);
/// How long the node stays down.
const DOWN_FOR: Duration = Duration::from_secs(10);

/// One action of the burst.
#[derive(Debug, Clone)]
struct Outcome {
    /// Sent at (ms since the burst started).
    sent_ms: u64,
    /// Answered after (ms).
    took_ms: u64,
    /// The template created, when acknowledged.
    acked: Option<String>,
    /// The error, when refused.
    error: Option<String>,
    /// Whether the refusal was a clear retryable one.
    retryable: bool,
}

/// Runs the scenario.
pub async fn run(rig: &mut Rig, _clusters: &Clusters) -> anyhow::Result<Value> {
    let before = rig.stream_cluster().await?;
    let leader = before["leader"]
        .as_str()
        .context("stream leader")?
        .to_string();
    let container = format!("pn-{leader}");
    println!("stream leader {leader}: killing {container} {KILL_AT:?} into the burst");

    let start = Instant::now();
    let outcomes: Arc<std::sync::Mutex<Vec<Outcome>>> = Arc::default();
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let api = rig.op.clone();
        let outcomes = outcomes.clone();
        clients.push(tokio::spawn(async move {
            let mut i = 0;
            while start.elapsed() < BURST {
                let sent = Instant::now();
                let name = format!("burst-{c}-{i}");
                let r = api
                    .call("system_create_template", &json!({ "name": name }))
                    .await;
                let outcome = match r {
                    Ok(v) => Outcome {
                        sent_ms: (sent - start).as_millis() as u64,
                        took_ms: ms(sent),
                        acked: v["template"]["id"].as_str().map(str::to_string),
                        error: None,
                        retryable: false,
                    },
                    Err(e) => Outcome {
                        sent_ms: (sent - start).as_millis() as u64,
                        took_ms: ms(sent),
                        acked: None,
                        retryable: retryable(&e),
                        error: Some(format!("{:#}", anyhow::Error::from(e))),
                    },
                };
                if outcome.error.is_some() {
                    // A client told to retry waits a little.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                outcomes.lock().expect("outcomes lock").push(outcome);
                i += 1;
            }
        }));
    }

    tokio::time::sleep(KILL_AT).await;
    let killed_at = ms(start);
    let retries_before = rig.retries();
    rig.docker(&["kill", &container])?;
    // Cluster C's bootstrap handshake while the stream elects a leader.
    rig.assign("c-server-1", "k3s-server", None).await?;
    let handshake = Instant::now();
    rig.wait_phase("c-server-1", "ready").await?;
    let c = rig.cluster_of("c-server-1").await?;
    wait_active(rig, &c).await?;
    let handshake_ms = ms(handshake);

    let until_restart = (KILL_AT + DOWN_FOR).saturating_sub(start.elapsed());
    tokio::time::sleep(until_restart).await;
    let restarted = Instant::now();
    let restarted_at = ms(start);
    rig.docker(&["start", &container])?;
    for c in clients {
        c.await?;
    }
    let rejoined = wait_until(
        STEP,
        &format!("{leader} to rejoin the event stream"),
        || async {
            let cluster = rig.stream_cluster().await.map_err(|e| format!("{e:#}"))?;
            let replicas = cluster["replicas"].as_array().cloned().unwrap_or_default();
            let mut names: Vec<&str> = replicas.iter().filter_map(|r| r["name"].as_str()).collect();
            names.extend(cluster["leader"].as_str());
            let all_current = replicas
                .iter()
                .all(|r| r["current"] == true && r["lag"].as_u64().unwrap_or(0) == 0);
            if names.len() == 3 && names.contains(&leader.as_str()) && all_current {
                Ok(cluster)
            } else {
                Err(cluster.to_string())
            }
        },
    )
    .await?;
    let rejoin_ms = ms(restarted);

    let outcomes = outcomes.lock().expect("outcomes lock").clone();
    for o in &outcomes {
        if let Some(id) = &o.acked {
            rig.ledger.push(Acked {
                what: format!("template {id} (burst)"),
                aggregate_id: id.clone(),
                kind: "system.template.created".into(),
            });
        }
    }
    let ok = outcomes.iter().filter(|o| o.acked.is_some()).count();
    let retried = outcomes.iter().filter(|o| o.retryable).count();
    let unclear: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.acked.is_none() && !o.retryable)
        .collect();
    // The longest stretch after the kill with no acknowledgement.
    let mut acks: Vec<u64> = outcomes
        .iter()
        .filter(|o| o.acked.is_some())
        .map(|o| o.sent_ms + o.took_ms)
        .collect();
    acks.sort_unstable();
    let first_ack_after_kill = acks.iter().find(|t| **t > killed_at).copied();
    let longest_gap = acks
        .windows(2)
        .filter(|w| w[1] > killed_at)
        .map(|w| w[1] - w[0].max(killed_at))
        .max()
        .unwrap_or(0);
    let mut took: Vec<u64> = outcomes.iter().map(|o| o.took_ms).collect();
    took.sort_unstable();
    let p = |q: f64| {
        took.get(((took.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(0)
    };
    let report = json!({
        "killed": container,
        "was_stream_leader": true,
        "new_leader": rejoined["leader"],
        "actions": outcomes.len(),
        "acknowledged": ok,
        "retryable_errors": retried,
        "unclear_errors": unclear.len(),
        "kill_at_ms": killed_at,
        "restart_at_ms": restarted_at,
        "longest_gap_without_ack_after_kill_ms": longest_gap,
        "first_ack_after_kill_ms": first_ack_after_kill.map(|t| t - killed_at),
        "action_latency_p50_ms": p(0.5),
        "action_latency_p99_ms": p(0.99),
        "action_latency_max_ms": took.last(),
        "cluster_c_handshake_during_outage_ms": handshake_ms,
        "test_driver_retries_during_outage": rig.retries() - retries_before,
        "cluster_c": c,
        "restart_to_rejoined_ms": rejoin_ms,
    });
    ensure!(
        unclear.is_empty(),
        "{} actions failed without a clear retryable error: {:?}; {report}",
        unclear.len(),
        unclear.iter().take(5).collect::<Vec<_>>()
    );
    ensure!(ok > 0, "no action was acknowledged: {report}");
    Ok(report)
}
