//! Scenario 2: a failure injected on one worker (its agent started with
//! `--fail-upgrade-to v-k3s-agent-1.31.0`) with
//! `max_consecutive_failures: 1` stops the rollout: the execution is
//! aborted (`max_consecutive_failures`), the node's step failed and was
//! rolled back — it runs 1.30.5 again — and no later step ever started.

use crate::world::*;
use anyhow::{ensure, Context as _};
use powernode_events::EventPayload;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_worker_stops_the_rollout_back_on_its_old_version() -> anyhow::Result<()> {
    let w = World::start().await?;
    let c = w
        .cluster("fail", 1, 3, |i| AgentFlags {
            fail_upgrade_to: (i == 1).then(|| AGENT_TO.to_string()),
            ..AgentFlags::default()
        })
        .await?;
    let bad = &c.workers[0];
    // One node per batch: the failing worker first (node-name order).
    let args = World::upgrade_inputs(&c.worker_template, "mod-k3s-agent", AGENT_TO, 33, 1);
    let plan = w.dry_run(args.clone()).await?;
    ensure!(
        plan["batches"] == json!([[0], [1], [2]])
            && plan["steps"][0]["instance_id"] == bad.instance_id.as_str(),
        "{plan}"
    );
    let exec = w.execute(args).await?;
    let id = exec["id"].as_str().context("execution id")?.to_string();
    let done = w.wait_finished(&id).await?;
    ensure!(done["status"] == "aborted", "{done}");
    let step = &done["steps"][0];
    ensure!(
        step["status"] == "failed"
            && step["rolled_back"] == true
            && step["instance_id"] == bad.instance_id.as_str(),
        "the failed node was rolled back: {step}"
    );
    ensure!(
        done["steps"][1]["status"] == "skipped" && done["steps"][2]["status"] == "skipped",
        "no later node touched: {done}"
    );
    let aborted = w
        .events("system.skill.execution.aborted")
        .await?
        .into_iter()
        .find_map(|(_, e)| match e.payload {
            EventPayload::SkillExecutionAborted(a) if a.execution_id == id => Some(a),
            _ => None,
        })
        .context("no abort in the log")?;
    ensure!(
        aborted.reason == "max_consecutive_failures"
            && aborted.detail.contains(&bad.host)
            && aborted.detail.contains("no further node touched"),
        "{aborted:?}"
    );

    // The node is back in service on its old version: as the platform
    // has it, as its agent reports it, and ready in its cluster.
    let node = w.wait_reported(bad, "k3s-agent", AGENT_FROM).await?;
    ensure!(node["upgrading"].is_null(), "{node}");
    ensure!(
        node["recent_errors"].as_array().is_some_and(|e| e
            .iter()
            .any(|m| m.as_str().is_some_and(|m| m.contains("wait_ready")))),
        "the failure is among its recent errors: {node}"
    );
    w.wait_ready_node(&c.id, bad).await?;
    let versions = w.module_versions("k3s-agent").await?;
    for n in &c.workers {
        ensure!(
            versions.get(&n.instance_id) == Some(&Some(AGENT_FROM.into())),
            "{} on {AGENT_FROM}: {versions:?}",
            n.host
        );
    }

    // No step started after the failure, and only the failed one started.
    let failed_at = w
        .events("system.skill.execution.step_failed")
        .await?
        .into_iter()
        .find_map(|(seq, e)| match e.payload {
            EventPayload::SkillStepFailed(f) if f.execution_id == id => Some(seq),
            _ => None,
        })
        .context("no step_failed in the log")?;
    // Read once more after the timer had its chance to act (the node's
    // report above came after the abort).
    w.wait_ready_node(&c.id, &c.workers[2]).await?;
    let started = w.started(&id).await?;
    ensure!(
        started.len() == 1 && started[0].1 == 0 && started[0].0 < failed_at,
        "only step 0 started, before its failure at seq {failed_at}: {started:?}"
    );
    for n in &c.workers[1..] {
        let i = w.introspect(&n.instance_id).await?;
        ensure!(i["upgrading"].is_null(), "{} never upgraded: {i}", n.host);
    }
    Ok(())
}
