//! Scenario 5: the quorum rule at every moment — no two of a cluster's
//! three servers are mid-step at once. Read from the log: each server
//! step's interval runs from its `step_started` to its outcome
//! (`step_succeeded` / `step_failed`); no two intervals overlap.

use crate::world::*;
use anyhow::{ensure, Context as _};
use powernode_events::EventPayload;
use serde_json::json;
use std::collections::BTreeMap;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_two_of_three_servers_are_mid_step_at_once_even_at_batch_pct_100() -> anyhow::Result<()>
{
    let w = World::start().await?;
    let c = w.cluster("quorum", 3, 0, |_| AgentFlags::default()).await?;
    // 100 % would put every server in one batch; the quorum rule splits them.
    let args = World::upgrade_inputs(&c.server_template, "mod-k3s-server", SERVER_TO, 100, 1);
    let exec = w.execute(args).await?;
    ensure!(exec["batches"] == json!([[0], [1], [2]]), "{exec}");
    let id = exec["id"].as_str().context("execution id")?;
    let done = w.wait_finished(id).await?;
    ensure!(
        done["status"] == "completed" && done["succeeded"] == 3,
        "{done}"
    );
    assert_servers_one_at_a_time(&w, &done, 3).await
}

/// `(started seq, outcome seq)` of every step of execution `id`.
pub async fn intervals(w: &World, id: &str) -> anyhow::Result<BTreeMap<u32, (u64, u64)>> {
    let mut started: BTreeMap<u32, u64> = BTreeMap::new();
    let mut ended: BTreeMap<u32, u64> = BTreeMap::new();
    for (seq, e) in w.events("system.skill.execution.step_").await? {
        match e.payload {
            EventPayload::SkillStepStarted(p) if p.execution_id == id => {
                started.entry(p.step).or_insert(seq);
            }
            EventPayload::SkillStepSucceeded(p) if p.execution_id == id => {
                ended.entry(p.step).or_insert(seq);
            }
            EventPayload::SkillStepFailed(p) if p.execution_id == id => {
                ended.entry(p.step).or_insert(seq);
            }
            _ => {}
        }
    }
    started
        .into_iter()
        .map(|(step, s)| {
            let e = ended
                .get(&step)
                .copied()
                .with_context(|| format!("step {step} of {id} started but has no outcome"))?;
            Ok((step, (s, e)))
        })
        .collect()
}

/// The `k3s-server` steps of execution `exec` (as answered) never
/// overlap in the log, and there are `servers` of them.
pub async fn assert_servers_one_at_a_time(
    w: &World,
    exec: &serde_json::Value,
    servers: usize,
) -> anyhow::Result<()> {
    let id = exec["id"].as_str().context("execution id")?;
    let server_steps: Vec<u32> = exec["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["role"] == "k3s-server")
        .filter_map(|s| s["step"].as_u64().map(|n| n as u32))
        .collect();
    let all = intervals(w, id).await?;
    let mut mine: Vec<(u32, (u64, u64))> = all
        .into_iter()
        .filter(|(step, _)| server_steps.contains(step))
        .collect();
    ensure!(
        mine.len() == servers,
        "{servers} server steps ran, not {}: {mine:?}",
        mine.len()
    );
    mine.sort_by_key(|(_, (s, _))| *s);
    for pair in mine.windows(2) {
        let ((a, (_, a_end)), (b, (b_start, _))) = (pair[0], pair[1]);
        ensure!(
            b_start > a_end,
            "server steps {a} and {b} were under way at once (step {b} started at seq {b_start}, step {a} ended at seq {a_end}): {mine:?}"
        );
    }
    Ok(())
}
