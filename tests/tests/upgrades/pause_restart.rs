//! Scenario 3: pause and resume across a restart of the services. The
//! execution is paused while a step runs, every service is stopped, the
//! agent finishes its step meanwhile (its signed outcome waits in its
//! `upgrade.json`), the services start again on their checkpoints: the
//! step's outcome comes in, nothing new starts while paused, and once
//! resumed the execution completes with no step started twice (counted in
//! the log).

use crate::world::*;
use anyhow::{ensure, Context as _};
use powernode_events::EventPayload;
use powernode_tests::lifecycle_support::wait_until;
use serde_json::json;
use std::collections::BTreeMap;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_across_a_restart_of_the_services_then_resumed_to_completion() -> anyhow::Result<()>
{
    let mut w = World::start().await?;
    let slow = || AgentFlags {
        upgrade_ms: Some(2500),
        ..AgentFlags::default()
    };
    let c = w.cluster("pause", 1, 4, |_| slow()).await?;
    let args = World::upgrade_inputs(&c.worker_template, "mod-k3s-agent", AGENT_TO, 25, 1);
    let exec = w.execute(args).await?;
    ensure!(exec["batches"] == json!([[0], [1], [2], [3]]), "{exec}");
    let id = exec["id"].as_str().context("execution id")?.to_string();
    wait_until(WAIT, "the first step started", || async {
        let s = w.started(&id).await.map_err(|e| format!("{e:#}"))?;
        if s.is_empty() {
            Err("none yet".to_string())
        } else {
            Ok(())
        }
    })
    .await?;
    let paused =
        w.op.ok(
            "system_pause_skill_execution",
            json!({ "execution_id": id, "reason": "maintenance window" }),
        )
        .await?;
    ensure!(paused["execution"]["status"] == "paused", "{paused}");
    let under_way: Vec<u32> = w.started(&id).await?.iter().map(|(_, s)| *s).collect();

    // Every service stops while a step is under way; its agent goes on,
    // finishes the step and signs its outcome with no platform to take it.
    w.stop_services().await?;
    for step in &under_way {
        let host = exec["steps"][*step as usize]["node_name"]
            .as_str()
            .context("node name")?;
        let n = c
            .workers
            .iter()
            .find(|n| n.host == host)
            .with_context(|| format!("no worker {host}"))?;
        let record = n.agent.state_dir.join("upgrade.json");
        wait_until(WAIT, &format!("{host} signing its outcome"), || async {
            let text = std::fs::read_to_string(&record).map_err(|e| e.to_string())?;
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
            if v["outcome"].is_string() && v["submitted"] == false {
                Ok(())
            } else {
                Err(text)
            }
        })
        .await?;
    }
    w.restart_services().await?;

    // The step's outcome comes in; the execution stays paused and starts
    // nothing more.
    let e = wait_until(
        WAIT,
        "the steps under way finished, still paused",
        || async {
            let e = w.execution(&id).await.map_err(|e| format!("{e:#}"))?;
            let done = under_way
                .iter()
                .all(|s| e["steps"][*s as usize]["status"] == "succeeded");
            if done && e["status"] == "paused" {
                Ok(e)
            } else {
                Err(e.to_string())
            }
        },
    )
    .await?;
    let now: Vec<u32> = w.started(&id).await?.iter().map(|(_, s)| *s).collect();
    ensure!(
        now == under_way,
        "nothing starts while paused: {under_way:?} then {now:?} ({e})"
    );

    let resumed =
        w.op.ok(
            "system_resume_skill_execution",
            json!({ "execution_id": id }),
        )
        .await?;
    ensure!(resumed["execution"]["status"] == "running", "{resumed}");
    let done = w.wait_finished(&id).await?;
    ensure!(
        done["status"] == "completed" && done["succeeded"] == 4 && done["failed"] == 0,
        "{done}"
    );

    // No step started twice, and every step after the resume started
    // after it.
    let mut count: BTreeMap<u32, usize> = BTreeMap::new();
    for (_, step) in w.started(&id).await? {
        *count.entry(step).or_default() += 1;
    }
    ensure!(
        count.len() == 4 && count.values().all(|n| *n == 1),
        "each step started exactly once: {count:?}"
    );
    let resumed_at = w
        .events("system.skill.execution.resumed")
        .await?
        .into_iter()
        .find_map(|(seq, e)| match e.payload {
            EventPayload::SkillExecutionResumed(r) if r.execution_id == id => Some(seq),
            _ => None,
        })
        .context("no resume in the log")?;
    for (seq, step) in w.started(&id).await? {
        ensure!(
            under_way.contains(&step) || seq > resumed_at,
            "step {step} started at seq {seq}, before the resume at {resumed_at}"
        );
    }
    let versions = w.module_versions("k3s-agent").await?;
    for n in &c.workers {
        ensure!(
            versions.get(&n.instance_id) == Some(&Some(AGENT_TO.into())),
            "{}: {versions:?}",
            n.host
        );
    }
    Ok(())
}
